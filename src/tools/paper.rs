//! `scmpl split --preset paper`: the authors' data protocol (their `utils.get_dataset('Sin')`
//! and `main.py`; DESIGN.md section 5), from indexed or extracted manifests.
//!
//! - `labelled`: a seeded random subsample of frames: 256k of FF++ train (Deepfakes,
//!   Face2Face, FaceSwap, Original|Real; NeuralTextures held out), 128k of DFDC parts 0, 4, 17,
//!   35, 40, 128k of the first half of Celeb-DF (halves by original, seeded);
//! - `unlabelled`: the frames of those FF++ and DFDC sources the subsample left (their
//!   `imgu = ri_d + ri_f`);
//! - `test_known`: FF++ test (DF, F2F, FS, Original) + DFDC part 10 + the second half of
//!   Celeb-DF subsampled to 51.2k; `test_same_gen`: FF++ test NeuralTextures + Original;
//!   `test_post_gen`: 25.6k StyleGAN + 25.6k FF++ test Original, balanced.
//!
//! Sizes are parameters with the paper's as defaults; a source smaller than its size is taken
//! whole. Labelled and test sets come from different FF++ splits, DFDC parts and Celeb-DF
//! halves, so a fake and its original never straddle them. A row may be in several test sets.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::split::GroupBy;
use super::ToolError;
use crate::hash::stable_hash;
use crate::manifest::{self, paths, FaceRow};

/// How many frames each sampled source gives (`--paper-size NAME=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaperSizes {
    /// FF++ train frames in `labelled` (their `epochs // 2 * 512`).
    pub ffpp: usize,
    /// DFDC frames in `labelled` (`epochs // 4 * 512`).
    pub dfdc: usize,
    /// Frames of Celeb-DF's first half in `labelled`.
    pub celebdf: usize,
    /// Frames of Celeb-DF's second half in `test_known`.
    pub celebdf_test: usize,
    /// StyleGAN frames, and as many FF++ Original ones, in `test_post_gen`.
    pub post_gen: usize,
}

impl Default for PaperSizes {
    fn default() -> Self {
        PaperSizes { ffpp: 256_000, dfdc: 128_000, celebdf: 128_000, celebdf_test: 51_200, post_gen: 25_600 }
    }
}

impl PaperSizes {
    /// Sets one size from `NAME=N`.
    pub fn set(&mut self, item: &str) -> Result<(), ToolError> {
        let bad = || ToolError::BadValue {
            what: "--paper-size",
            value: item.into(),
            expected: "NAME=N with NAME one of ffpp, dfdc, celebdf, celebdf_test, post_gen".into(),
        };
        let (name, n) = item.split_once('=').ok_or_else(bad)?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        match name.trim() {
            "ffpp" => self.ffpp = n,
            "dfdc" => self.dfdc = n,
            "celebdf" => self.celebdf = n,
            "celebdf_test" => self.celebdf_test = n,
            "post_gen" => self.post_gen = n,
            _ => return Err(bad()),
        }
        Ok(())
    }
}

/// The sets, and what each source gave: (set, source, rows available, rows taken).
#[derive(Debug, Default)]
pub struct PaperSets {
    pub sets: BTreeMap<&'static str, Vec<FaceRow>>,
    pub sources: Vec<(&'static str, &'static str, usize, usize)>,
}

pub const SETS: [&str; 5] = ["labelled", "unlabelled", "test_known", "test_same_gen", "test_post_gen"];

/// `n` rows of `pool` drawn at random (seeded by `seed` and `salt`), and the rest, both in
/// the pool's order.
fn sample<'a>(pool: &[&'a FaceRow], n: usize, seed: u64, salt: &str) -> (Vec<&'a FaceRow>, Vec<&'a FaceRow>) {
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by_key(|&i| (stable_hash(&format!("{seed}:{salt}:{}/{}", pool[i].dataset, pool[i].path)), i));
    let taken: HashSet<usize> = order.into_iter().take(n).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, r) in pool.iter().enumerate() {
        if taken.contains(&i) { a.push(*r) } else { b.push(*r) }
    }
    (a, b)
}

/// The paper's sets from `rows` (see the module's doc).
pub fn paper_sets(rows: &[FaceRow], seed: u64, sizes: PaperSizes) -> PaperSets {
    const KNOWN_FF: [&str; 5] = ["Deepfakes", "Face2Face", "FaceSwap", "Original", "Real"];
    const LABELLED_DFDC: [&str; 5] = ["0", "4", "17", "35", "40"];
    let is_real_ff = |r: &FaceRow| r.part == "Original" || r.part == "Real";
    let pick = |f: &dyn Fn(&FaceRow) -> bool| rows.iter().filter(|r| f(r)).collect::<Vec<&FaceRow>>();
    let ff_train = pick(&|r| r.dataset == "ffpp" && r.split == "train" && KNOWN_FF.contains(&r.part.as_str()));
    let ff_test = |f: &dyn Fn(&FaceRow) -> bool| pick(&|r| r.dataset == "ffpp" && r.split == "test" && f(r));
    let dfdc_lab = pick(&|r| r.dataset == "dfdc" && LABELLED_DFDC.contains(&r.part.as_str()));
    // Celeb-DF halves by original group, in seeded hash order.
    let mut groups: Vec<String> =
        rows.iter().filter(|r| r.dataset == "celebdf").map(|r| GroupBy::Original.key(r)).collect::<BTreeSet<_>>().into_iter().collect();
    groups.sort_by_key(|k| stable_hash(&format!("{seed}:{k}")));
    let first_half: BTreeSet<&String> = groups.iter().take(groups.len() / 2).collect();
    let celeb_first = pick(&|r| r.dataset == "celebdf" && first_half.contains(&GroupBy::Original.key(r)));
    let celeb_second = pick(&|r| r.dataset == "celebdf" && !first_half.contains(&GroupBy::Original.key(r)));

    let mut out = PaperSets::default();
    let mut put = |set: &'static str, source: &'static str, available: usize, taken: Vec<&FaceRow>| {
        out.sources.push((set, source, available, taken.len()));
        out.sets.entry(set).or_default().extend(taken.into_iter().cloned().map(|mut r| {
            r.split = set.to_string();
            r
        }));
    };
    let (ff_l, ff_u) = sample(&ff_train, sizes.ffpp, seed, "ffpp");
    let (dfdc_l, dfdc_u) = sample(&dfdc_lab, sizes.dfdc, seed, "dfdc");
    let (celeb_l, _) = sample(&celeb_first, sizes.celebdf, seed, "celebdf");
    put("labelled", "ffpp train", ff_train.len(), ff_l);
    put("labelled", "dfdc 0,4,17,35,40", dfdc_lab.len(), dfdc_l);
    put("labelled", "celebdf 1st half", celeb_first.len(), celeb_l);
    let (ff_u_n, dfdc_u_n) = (ff_u.len(), dfdc_u.len());
    put("unlabelled", "dfdc (rest)", dfdc_u_n, dfdc_u);
    put("unlabelled", "ffpp train (rest)", ff_u_n, ff_u);
    let known_ff = ff_test(&|r| KNOWN_FF.contains(&r.part.as_str()));
    let dfdc10 = pick(&|r| r.dataset == "dfdc" && r.part == "10");
    let (celeb_t, _) = sample(&celeb_second, sizes.celebdf_test, seed, "celebdf_test");
    put("test_known", "ffpp test", known_ff.len(), known_ff.clone());
    put("test_known", "dfdc 10", dfdc10.len(), dfdc10.clone());
    put("test_known", "celebdf 2nd half", celeb_second.len(), celeb_t);
    let same_gen = ff_test(&|r| r.part == "NeuralTextures" || is_real_ff(r));
    put("test_same_gen", "ffpp test NT+Original", same_gen.len(), same_gen.clone());
    let stylegan = pick(&|r| r.dataset == "stylegan");
    let ff_real = ff_test(&|r| is_real_ff(r));
    let n = sizes.post_gen.min(stylegan.len()).min(ff_real.len());
    let (sg, _) = sample(&stylegan, n, seed, "post_gen_fake");
    let (fr, _) = sample(&ff_real, n, seed, "post_gen_real");
    put("test_post_gen", "stylegan", stylegan.len(), sg);
    put("test_post_gen", "ffpp test Original", ff_real.len(), fr);
    for name in SETS {
        out.sets.entry(name).or_default();
    }
    out
}

/// `scmpl split --preset paper`: the sets of [`paper_sets`] from every manifest of `inputs`,
/// paths rebased on `out`, written as `out/<set>.csv`. Returns the sets and their files.
pub fn paper_files(inputs: &[PathBuf], seed: u64, sizes: PaperSizes, out: &Path) -> Result<(PaperSets, Vec<PathBuf>), ToolError> {
    std::fs::create_dir_all(out).map_err(ToolError::io(out))?;
    let mut rows = Vec::new();
    for f in inputs {
        let base = paths::folder_of(f);
        for mut r in manifest::read_rows::<FaceRow>(f)? {
            r.path = paths::rebase(&base.join(&r.path), out)?;
            rows.push(r);
        }
    }
    let sets = paper_sets(&rows, seed, sizes);
    let mut files = Vec::new();
    for (name, set) in &sets.sets {
        let path = out.join(format!("{name}.csv"));
        manifest::write_all(&path, set)?;
        files.push(path);
    }
    Ok((sets, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dataset: &str, part: &str, split: &str, original: &str, frame: u64, label: u8) -> FaceRow {
        FaceRow {
            path: format!("{dataset}/{part}/{original}/{frame}.png"),
            video_id: format!("{part}_{original}"),
            original: original.into(),
            dataset: dataset.into(),
            part: part.into(),
            split: split.into(),
            frame,
            label: Some(label),
            ..Default::default()
        }
    }

    fn frames(dataset: &str, part: &str, split: &str, original: &str, n: u64, label: u8) -> Vec<FaceRow> {
        (0..n).map(|f| r(dataset, part, split, original, f, label)).collect()
    }

    #[test]
    fn the_paper_protocol_subsamples_each_source_and_keeps_the_rest_unlabelled() {
        let mut rows = Vec::new();
        rows.extend(frames("ffpp", "Deepfakes", "train", "000", 30, 1));
        rows.extend(frames("ffpp", "Original", "train", "000", 30, 0));
        rows.extend(frames("ffpp", "NeuralTextures", "train", "000", 10, 1));
        rows.extend(frames("ffpp", "Original", "test", "004", 10, 0));
        rows.extend(frames("ffpp", "NeuralTextures", "test", "004", 10, 1));
        rows.extend(frames("dfdc", "4", "train", "a", 20, 0));
        rows.extend(frames("dfdc", "10", "train", "b", 5, 0));
        rows.extend(frames("dfdc", "22", "train", "c", 7, 1));
        for i in 0..4 {
            rows.extend(frames("celebdf", "Celeb-real", "", &format!("id{i}_0000"), 10, 0));
        }
        rows.extend(frames("stylegan", "", "", "s", 30, 1));
        let sizes = PaperSizes { ffpp: 40, dfdc: 12, celebdf: 15, celebdf_test: 8, post_gen: 6 };
        let p = paper_sets(&rows, 777, sizes);
        let count = |set: &str, ds: &str, part: Option<&str>| {
            p.sets[set].iter().filter(|r| r.dataset == ds && part.is_none_or(|x| r.part == x)).count()
        };
        assert_eq!(count("labelled", "ffpp", None), 40, "sampled from 60 FF++ train frames");
        assert_eq!(count("labelled", "ffpp", Some("NeuralTextures")), 0, "NT held out");
        assert_eq!(count("labelled", "dfdc", None), 12);
        assert_eq!(count("labelled", "celebdf", None), 15);
        // The unlabelled set is the leftover of the same FF++ and DFDC sources.
        assert_eq!(count("unlabelled", "ffpp", None), 20);
        assert_eq!(count("unlabelled", "dfdc", None), 8);
        assert_eq!(count("unlabelled", "dfdc", Some("22")), 0, "parts outside the paper's list are not used");
        let key = |r: &FaceRow| r.path.clone();
        let lab: HashSet<String> = p.sets["labelled"].iter().map(key).collect();
        assert!(p.sets["unlabelled"].iter().all(|r| !lab.contains(&key(r))), "no frame in both");
        // Tests: the second Celeb-DF half subsampled, the post-generation set balanced.
        assert_eq!(count("test_known", "celebdf", None), 8);
        assert_eq!(count("test_known", "dfdc", Some("10")), 5);
        assert_eq!(count("test_known", "ffpp", None), 10);
        assert_eq!((count("test_post_gen", "stylegan", None), count("test_post_gen", "ffpp", None)), (6, 6));
        assert_eq!(count("test_same_gen", "ffpp", None), 20);
        let celeb = |set: &str| p.sets[set].iter().filter(|r| r.dataset == "celebdf").map(|r| r.original.clone()).collect::<HashSet<_>>();
        assert!(celeb("labelled").is_disjoint(&celeb("test_known")), "Celeb-DF halves by original");
        // Deterministic, and another seed draws other frames.
        assert_eq!(paper_sets(&rows, 777, sizes).sets["labelled"], p.sets["labelled"]);
        assert_ne!(paper_sets(&rows, 778, sizes).sets["labelled"], p.sets["labelled"]);
        assert!(p.sets.values().flatten().all(|r| SETS.contains(&r.split.as_str())));
        // The report says what each source gave.
        assert!(p.sources.contains(&("labelled", "ffpp train", 60, 40)));
        assert!(p.sources.contains(&("unlabelled", "dfdc (rest)", 8, 8)));
    }

    #[test]
    fn with_only_the_papers_sources_the_unlabelled_set_is_not_empty() {
        let mut rows = frames("dfdc", "0", "train", "a", 10, 0);
        rows.extend(frames("ffpp", "FaceSwap", "train", "001", 10, 1));
        let p = paper_sets(&rows, 777, PaperSizes { ffpp: 5, dfdc: 5, ..Default::default() });
        assert_eq!(p.sets["unlabelled"].len(), 10);
    }

    #[test]
    fn sizes_are_set_by_name() {
        let mut s = PaperSizes::default();
        s.set("ffpp=1000").unwrap();
        s.set("post_gen = 10").unwrap();
        assert_eq!((s.ffpp, s.post_gen, s.dfdc), (1000, 10, 128_000));
        assert!(s.set("imagenet=3").is_err() && s.set("ffpp").is_err());
    }
}
