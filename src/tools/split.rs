//! `scmpl split`: leak-free splits of a `faces.csv`.
//!
//! Rows are grouped by a key (`original`: a fake and its source share a group; `video`; or
//! `part`), groups are ordered by a seeded stable hash, and whole groups are assigned to splits
//! by ratio of rows (or by part lists), so no group ever straddles two splits. Deterministic:
//! the same input and seed give the same split on every machine.

use std::collections::{BTreeMap, BTreeSet};

use std::path::{Path, PathBuf};

use super::ToolError;
use crate::hash::stable_hash;
use crate::manifest::{self, paths, FaceRow};

/// What keeps rows together in one split (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Original,
    Video,
    Part,
}

impl GroupBy {
    /// The group of a row. Rows without an original group by their video.
    pub fn key(&self, r: &FaceRow) -> String {
        match self {
            GroupBy::Original if !r.original.is_empty() => format!("{}/{}", r.dataset, r.original),
            GroupBy::Original | GroupBy::Video => format!("{}/{}", r.dataset, r.video_id),
            GroupBy::Part => format!("{}/{}", r.dataset, r.part),
        }
    }
}

/// How rows are spread over splits.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// (split name, fraction of rows); fractions sum to 1.
    Ratios(Vec<(String, f64)>),
    /// (split name, parts); rows of other parts are left out of every split (split "").
    Parts(Vec<(String, Vec<String>)>),
}

/// Parses `0.8,0.1,0.1` (train,val,test) or `0.8,0.2` (train,test).
pub fn parse_ratios(s: &str) -> Result<SplitSpec, ToolError> {
    let bad = |expected: &str| ToolError::BadValue { what: "--ratios", value: s.into(), expected: expected.into() };
    let v: Vec<f64> = s.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad("numbers separated by commas"))?;
    let names: &[&str] = match v.len() {
        2 => &["train", "test"],
        3 => &["train", "val", "test"],
        _ => return Err(bad("give 2 (train,test) or 3 (train,val,test) numbers")),
    };
    let sum: f64 = v.iter().sum();
    if v.iter().any(|x| *x < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(bad("must be >= 0 and sum to 1"));
    }
    Ok(SplitSpec::Ratios(names.iter().map(|n| n.to_string()).zip(v).collect()))
}

/// Parses `train=0,1,2` style part lists.
pub fn parse_parts(items: &[String]) -> Result<SplitSpec, ToolError> {
    let mut out = Vec::new();
    for it in items {
        let (name, parts) = it
            .split_once('=')
            .ok_or_else(|| ToolError::BadValue { what: "--parts", value: it.clone(), expected: "expected NAME=P1,P2".into() })?;
        out.push((name.to_string(), parts.split(',').map(|p| p.trim().to_string()).collect()));
    }
    Ok(SplitSpec::Parts(out))
}

/// Rows per (split, dataset, label).
pub type Counts = BTreeMap<(String, String, String), usize>;

pub fn counts(rows: &[FaceRow]) -> Counts {
    let mut c = Counts::new();
    for r in rows {
        *c.entry((r.split.clone(), r.dataset.clone(), r.label.map(|l| l.to_string()).unwrap_or_default())).or_default() += 1;
    }
    c
}

/// Groups that appear in more than one split (split "" ignored), with their splits.
pub fn straddling(rows: &[FaceRow], by: GroupBy) -> Vec<(String, BTreeSet<String>)> {
    let mut splits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.split.is_empty()) {
        splits.entry(by.key(r)).or_default().insert(r.split.clone());
    }
    splits.into_iter().filter(|(_, s)| s.len() > 1).collect()
}

/// Sets `split` on every row. Returns an error if the result would leak (it cannot, by
/// construction; checked anyway).
pub fn assign(rows: &mut [FaceRow], by: GroupBy, spec: &SplitSpec, seed: u64) -> Result<(), ToolError> {
    let mut group_rows: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.iter() {
        *group_rows.entry(by.key(r)).or_default() += 1;
    }
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    match spec {
        SplitSpec::Ratios(ratios) => {
            let mut groups: Vec<(&String, &usize)> = group_rows.iter().collect();
            groups.sort_by_key(|(k, _)| stable_hash(&format!("{seed}:{k}")));
            let total: usize = rows.len();
            let mut done = 0usize;
            for (k, n) in groups {
                // The split whose cumulative share the middle of this group falls in.
                let at = (done as f64 + *n as f64 / 2.0) / total.max(1) as f64;
                let mut acc = 0.0;
                let mut name = &ratios.last().expect("ratios").0;
                for (s, r) in ratios {
                    acc += r;
                    if at < acc {
                        name = s;
                        break;
                    }
                }
                split_of.insert(k.clone(), name.clone());
                done += n;
            }
        }
        SplitSpec::Parts(parts) => {
            for r in rows.iter() {
                let name = parts.iter().find(|(_, ps)| ps.contains(&r.part)).map(|(n, _)| n.clone()).unwrap_or_default();
                split_of.insert(by.key(r), name);
            }
        }
    }
    for r in rows.iter_mut() {
        r.split = match spec {
            SplitSpec::Parts(parts) => parts.iter().find(|(_, ps)| ps.contains(&r.part)).map(|(n, _)| n.clone()).unwrap_or_default(),
            SplitSpec::Ratios(_) => split_of[&by.key(r)].clone(),
        };
    }
    let leaks = straddling(rows, by);
    if !leaks.is_empty() {
        return Err(ToolError::Leak(leaks.iter().take(5).map(|(k, s)| format!("{k} in {s:?}")).collect::<Vec<_>>().join("; ")));
    }
    Ok(())
}

/// `scmpl split`: splits the faces.csv `faces` and writes it to `out`, paths rebased on `out`'s
/// folder so they stay valid. Returns the split rows.
pub fn split_file(faces: &Path, by: GroupBy, spec: &SplitSpec, seed: u64, out: &Path) -> Result<Vec<FaceRow>, ToolError> {
    let mut rows: Vec<FaceRow> = manifest::read_rows(faces)?;
    assign(&mut rows, by, spec, seed)?;
    let (base, out_dir) = (paths::folder_of(faces), paths::folder_of(out));
    std::fs::create_dir_all(out_dir).map_err(ToolError::io(out_dir))?;
    for r in rows.iter_mut() {
        r.path = paths::rebase(&base.join(&r.path), out_dir)?;
    }
    manifest::write_all(out, &rows)?;
    Ok(rows)
}

/// `scmpl split --preset paper`: the sets of [`paper_sets`] from every manifest of `inputs`,
/// written as `out/<set>.csv`. Returns (set, its file, its rows).
pub fn paper_files(inputs: &[PathBuf], seed: u64, out: &Path) -> Result<Vec<(&'static str, PathBuf, Vec<FaceRow>)>, ToolError> {
    std::fs::create_dir_all(out).map_err(ToolError::io(out))?;
    let mut rows = Vec::new();
    for f in inputs {
        let base = paths::folder_of(f);
        for mut r in manifest::read_rows::<FaceRow>(f)? {
            r.path = paths::rebase(&base.join(&r.path), out)?;
            rows.push(r);
        }
    }
    let mut written = Vec::new();
    for (name, set) in paper_sets(&rows, seed) {
        let path = out.join(format!("{name}.csv"));
        manifest::write_all(&path, &set)?;
        written.push((name, path, set));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(video: &str, original: &str, label: u8) -> FaceRow {
        FaceRow { video_id: video.into(), original: original.into(), dataset: "d".into(), label: Some(label), ..Default::default() }
    }

    #[test]
    fn fakes_follow_their_original_and_ratios_hold_roughly() {
        let mut rows = Vec::new();
        for i in 0..200 {
            let o = format!("r{i}");
            rows.push(row(&o, &o, 0));
            rows.push(row(&format!("f{i}"), &o, 1));
        }
        assign(&mut rows, GroupBy::Original, &parse_ratios("0.8,0.1,0.1").unwrap(), 7).unwrap();
        assert!(straddling(&rows, GroupBy::Original).is_empty());
        let train = rows.iter().filter(|r| r.split == "train").count();
        assert!((290..350).contains(&train), "{train}");
        let mut again = rows.clone();
        assign(&mut again, GroupBy::Original, &parse_ratios("0.8,0.1,0.1").unwrap(), 7).unwrap();
        assert_eq!(rows, again, "deterministic");
        // A hand-made leak is seen.
        rows[0].split = "train".into();
        rows[1].split = "test".into();
        assert_eq!(straddling(&rows, GroupBy::Original).len(), 1);
    }

    #[test]
    fn bad_ratios_are_refused() {
        assert!(parse_ratios("0.5,0.2").is_err());
        assert!(parse_ratios("1").is_err());
        assert!(parse_ratios("a,b").is_err());
    }
}

/// The paper's data protocol (DESIGN.md section 5), from indexed/extracted manifests:
/// `labelled` = FF++ train (Deepfakes, Face2Face, FaceSwap, Original|Real; NeuralTextures held
/// out) + DFDC parts 0,4,17,35,40 + the first half of Celeb-DF (by original, seeded);
/// `unlabelled` = the other DFDC parts except 10; `test_known` = FF++ test (DF, F2F, FS,
/// Original) + DFDC part 10 + the second half of Celeb-DF; `test_same_gen` = FF++ test
/// NeuralTextures + Original; `test_post_gen` = StyleGAN + FF++ test Original.
/// A row may belong to several test sets; each set is its own manifest.
pub fn paper_sets(rows: &[FaceRow], seed: u64) -> BTreeMap<&'static str, Vec<FaceRow>> {
    const KNOWN_FF: [&str; 5] = ["Deepfakes", "Face2Face", "FaceSwap", "Original", "Real"];
    const LABELLED_DFDC: [&str; 5] = ["0", "4", "17", "35", "40"];
    let is_real_ff = |r: &FaceRow| r.part == "Original" || r.part == "Real";
    // Celeb-DF halves by original group, in seeded hash order.
    let mut celeb_groups: Vec<String> =
        rows.iter().filter(|r| r.dataset == "celebdf").map(|r| GroupBy::Original.key(r)).collect::<BTreeSet<_>>().into_iter().collect();
    celeb_groups.sort_by_key(|k| stable_hash(&format!("{seed}:{k}")));
    let first_half: BTreeSet<&String> = celeb_groups.iter().take(celeb_groups.len() / 2).collect();
    let mut sets: BTreeMap<&'static str, Vec<FaceRow>> = BTreeMap::new();
    for name in ["labelled", "unlabelled", "test_known", "test_same_gen", "test_post_gen"] {
        sets.insert(name, Vec::new());
    }
    let mut put = |name: &'static str, r: &FaceRow| {
        let mut r = r.clone();
        r.split = name.to_string();
        sets.get_mut(name).expect("known set").push(r);
    };
    for r in rows {
        match r.dataset.as_str() {
            "ffpp" => {
                let known = KNOWN_FF.contains(&r.part.as_str());
                match r.split.as_str() {
                    "train" if known => put("labelled", r),
                    "test" => {
                        if known {
                            put("test_known", r);
                        }
                        if r.part == "NeuralTextures" || is_real_ff(r) {
                            put("test_same_gen", r);
                        }
                        if is_real_ff(r) {
                            put("test_post_gen", r);
                        }
                    }
                    _ => {}
                }
            }
            "dfdc" => {
                if LABELLED_DFDC.contains(&r.part.as_str()) {
                    put("labelled", r);
                } else if r.part == "10" {
                    put("test_known", r);
                } else {
                    put("unlabelled", r);
                }
            }
            "celebdf" => {
                if first_half.contains(&GroupBy::Original.key(r)) {
                    put("labelled", r)
                } else {
                    put("test_known", r)
                }
            }
            "stylegan" => put("test_post_gen", r),
            _ => {}
        }
    }
    sets
}

#[cfg(test)]
mod paper_tests {
    use super::*;

    fn r(dataset: &str, part: &str, split: &str, original: &str, label: u8) -> FaceRow {
        FaceRow {
            path: format!("{dataset}/{part}/{original}.png"),
            video_id: format!("{part}_{original}"),
            original: original.into(),
            dataset: dataset.into(),
            part: part.into(),
            split: split.into(),
            label: Some(label),
            ..Default::default()
        }
    }

    #[test]
    fn the_paper_protocol_puts_each_source_where_the_paper_does() {
        let rows = vec![
            r("ffpp", "Deepfakes", "train", "000", 1),
            r("ffpp", "NeuralTextures", "train", "000", 1),
            r("ffpp", "Original", "test", "004", 0),
            r("ffpp", "NeuralTextures", "test", "004", 1),
            r("dfdc", "4", "train", "a", 0),
            r("dfdc", "10", "train", "b", 0),
            r("dfdc", "22", "train", "c", 1),
            r("celebdf", "real", "", "id0_0000", 0),
            r("celebdf", "fake", "", "id1_0000", 1),
            r("stylegan", "", "", "s1", 1),
        ];
        let sets = paper_sets(&rows, 1);
        let ids = |n: &str| sets[n].iter().map(|r| format!("{}:{}", r.dataset, r.video_id)).collect::<Vec<_>>();
        assert_eq!(ids("labelled").len(), 3, "{:?}", ids("labelled"));
        assert!(ids("labelled").contains(&"ffpp:Deepfakes_000".to_string()));
        assert!(!ids("labelled").iter().any(|i| i.contains("NeuralTextures")), "NT held out");
        assert_eq!(ids("unlabelled"), vec!["dfdc:22_c"]);
        assert_eq!(ids("test_same_gen"), vec!["ffpp:Original_004", "ffpp:NeuralTextures_004"]);
        assert_eq!(ids("test_post_gen"), vec!["ffpp:Original_004", "stylegan:_s1"]);
        assert!(ids("test_known").contains(&"dfdc:10_b".to_string()));
        assert_eq!(ids("test_known").iter().filter(|i| i.starts_with("celebdf")).count(), 1);
        assert!(sets["labelled"].iter().all(|r| r.split == "labelled"));
    }
}
