//! `scmpl index`: image-folder datasets (crops someone already has) to the `faces.csv` schema.
//!
//! Layouts and their labels (0 real, 1 fake):
//! - `ffpp`: `{train_set,test_set}/{Deepfakes,Face2Face,FaceSwap,NeuralTextures,Original|Real}/<video>/<img>`;
//!   real = `Original` (the reference code) or `Real` (its README); part = the method; split from
//!   the set folder; a fake video `TTT_SSS` has original `TTT`.
//! - `celebdf`: `fake`/`fake_imgs` = 1, `real`/`youtube_real_imgs` = 0; a fake `idA_idB_NNNN` has
//!   original `idA_NNNN`.
//! - `celeba`: all real. `stylegan`: all fake.
//! - `folders`: `--label-map DIR=LABEL` for each top folder.
//!
//! Every image is decoded once; those that do not decode are reported, not indexed.

use std::collections::BTreeMap;
use std::path::Path;

use super::ToolError;
use crate::manifest::{self, paths, FaceRow};

/// A dataset layout (`scmpl index --layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Ffpp,
    #[value(name = "celebdf")]
    CelebDf,
    #[value(name = "celeba")]
    CelebA,
    #[value(name = "stylegan")]
    StyleGan,
    Folders,
}

impl Layout {
    fn dataset(&self) -> &'static str {
        match self {
            Layout::Ffpp => "ffpp",
            Layout::CelebDf => "celebdf",
            Layout::CelebA => "celeba",
            Layout::StyleGan => "stylegan",
            Layout::Folders => "folders",
        }
    }
}

/// What one image is, by the layout's rules (None: not part of the dataset).
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub label: u8,
    pub video_id: String,
    pub original: String,
    pub part: String,
    pub split: String,
}

/// Labels `rel` (the image path relative to the root, `/`-separated components).
pub fn label(layout: Layout, rel: &[&str], label_map: &BTreeMap<String, u8>) -> Option<Labelled> {
    let parent = |n: usize| rel.len().checked_sub(n + 1).map(|i| rel[i]);
    let stem_of = |s: &str| Path::new(s).file_stem().map(|x| x.to_string_lossy().into_owned()).unwrap_or_default();
    match layout {
        Layout::Ffpp => {
            // .../{train_set,test_set}/{method}/{video}/{img}
            let (set, method, video) = (parent(3)?, parent(2)?, parent(1)?);
            let split = match set {
                "train_set" => "train",
                "test_set" => "test",
                "val_set" | "valid_set" => "val",
                _ => return None,
            };
            let label = match method {
                "Original" | "Real" => 0,
                "Deepfakes" | "Face2Face" | "FaceSwap" | "NeuralTextures" | "FaceShifter" => 1,
                _ => return None,
            };
            let original = video.split('_').next().unwrap_or(video).to_string();
            Some(Labelled { label, video_id: format!("{method}__{video}"), original, part: method.into(), split: split.into() })
        }
        Layout::CelebDf => {
            let (idx, label) = rel.iter().enumerate().find_map(|(i, c)| match *c {
                "fake" | "fake_imgs" | "Celeb-synthesis" => Some((i, 1u8)),
                "real" | "youtube_real_imgs" | "Celeb-real" | "YouTube-real" => Some((i, 0u8)),
                _ => None,
            })?;
            // The video is the folder under the label folder, or the image's own stem.
            let video = if rel.len() > idx + 2 { rel[idx + 1].to_string() } else { stem_of(rel[rel.len() - 1]) };
            let parts: Vec<&str> = video.split('_').collect();
            let original = if label == 1 && parts.len() == 3 { format!("{}_{}", parts[0], parts[2]) } else { video.clone() };
            Some(Labelled { label, video_id: format!("{}__{video}", rel[idx]), original, part: rel[idx].into(), split: String::new() })
        }
        Layout::CelebA | Layout::StyleGan => {
            let stem = stem_of(rel[rel.len() - 1]);
            let id = rel[..rel.len() - 1].iter().chain(std::iter::once(&stem.as_str())).copied().collect::<Vec<_>>().join("__");
            Some(Labelled {
                label: if layout == Layout::CelebA { 0 } else { 1 },
                video_id: id.clone(),
                original: id,
                part: String::new(),
                split: String::new(),
            })
        }
        Layout::Folders => {
            let top = rel.first()?;
            let label = *label_map.get(*top)?;
            let video = if rel.len() > 2 { rel[1].to_string() } else { stem_of(rel[rel.len() - 1]) };
            Some(Labelled { label, video_id: format!("{top}__{video}"), original: format!("{top}__{video}"), part: top.to_string(), split: String::new() })
        }
    }
}

/// Parses `--label-map DIR=LABEL` items (label 0 real, 1 fake); `folders` needs at least one.
pub fn label_map(layout: Layout, items: &[String]) -> Result<BTreeMap<String, u8>, ToolError> {
    let bad = |value: &str, expected: &str| ToolError::BadValue { what: "--label-map", value: value.into(), expected: expected.into() };
    let mut map = BTreeMap::new();
    for m in items {
        let (dir, label) = m.split_once('=').ok_or_else(|| bad(m, "expected DIR=LABEL"))?;
        let label: u8 = label.parse().ok().filter(|l| *l <= 1).ok_or_else(|| bad(m, "the label is 0 (real) or 1 (fake)"))?;
        map.insert(dir.to_string(), label);
    }
    if layout == Layout::Folders && map.is_empty() {
        return Err(bad("", "--layout folders needs at least one --label-map DIR=LABEL"));
    }
    Ok(map)
}

/// What `index` found.
#[derive(Debug, Default)]
pub struct IndexReport {
    pub rows: usize,
    /// Images that did not decode (path: reason).
    pub unreadable: Vec<String>,
    /// Images outside the layout's folders.
    pub unlabelled: usize,
}

/// Walks `root`, labels every image by `layout`, checks it decodes, and writes `out`
/// (a faces.csv; paths relative to its folder).
pub fn index(root: &Path, layout: Layout, label_map: &BTreeMap<String, u8>, out: &Path) -> Result<IndexReport, ToolError> {
    if !root.is_dir() {
        return Err(ToolError::NotAFolder(root.to_path_buf()));
    }
    let mut report = IndexReport::default();
    let mut rows = Vec::new();
    let mut frames_of: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let out_dir = paths::folder_of(out).to_path_buf();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| ToolError::Io { path: root.to_path_buf(), source: e.into() })?;
        let path = entry.path();
        if !(entry.file_type().is_file() && paths::is_image(path)) {
            continue;
        }
        let rel: Vec<String> = path.strip_prefix(root).expect("under root").components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let rel_refs: Vec<&str> = rel.iter().map(String::as_str).collect();
        let Some(l) = label(layout, &rel_refs, label_map) else {
            report.unlabelled += 1;
            continue;
        };
        let (w, h) = match image::open(path) {
            Ok(img) => (img.width(), img.height()),
            Err(e) => {
                report.unreadable.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let counter = frames_of.entry(l.video_id.clone()).or_default();
        let frame = *counter;
        *counter += 1;
        rows.push(FaceRow {
            path: paths::rebase(path, &out_dir)?,
            video_id: l.video_id,
            original: l.original,
            dataset: layout.dataset().into(),
            part: l.part,
            label: Some(l.label),
            frame,
            face: 0,
            track: 0,
            x1: 0.0,
            y1: 0.0,
            x2: w as f32,
            y2: h as f32,
            score: 1.0,
            split: l.split,
            align: String::new(),
        });
    }
    report.rows = rows.len();
    manifest::write_all(out, &rows)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(layout: Layout, p: &str) -> Option<Labelled> {
        let parts: Vec<&str> = p.split('/').collect();
        let map: BTreeMap<String, u8> = [("good".to_string(), 0), ("bad".to_string(), 1)].into_iter().collect();
        label(layout, &parts, &map)
    }

    #[test]
    fn ffpp_both_real_names_and_fake_originals() {
        let r = l(Layout::Ffpp, "train_set/Original/000/0001.png").unwrap();
        assert_eq!((r.label, r.original.as_str(), r.split.as_str()), (0, "000", "train"));
        let r = l(Layout::Ffpp, "test_set/Real/000/0001.png").unwrap();
        assert_eq!(r.label, 0);
        let f = l(Layout::Ffpp, "train_set/Deepfakes/000_003/0001.png").unwrap();
        assert_eq!((f.label, f.original.as_str(), f.part.as_str()), (1, "000", "Deepfakes"));
        assert!(l(Layout::Ffpp, "train_set/Unknown/000/1.png").is_none());
    }

    #[test]
    fn celebdf_code_and_readme_layouts() {
        let f = l(Layout::CelebDf, "fake/id0_id16_0000/12.png").unwrap();
        assert_eq!((f.label, f.original.as_str()), (1, "id0_0000"));
        let f = l(Layout::CelebDf, "fake_imgs/id0_id16_0000_12.png").unwrap();
        assert_eq!(f.label, 1);
        let r = l(Layout::CelebDf, "youtube_real_imgs/00001/3.jpg").unwrap();
        assert_eq!(r.label, 0);
        let r = l(Layout::CelebDf, "real/id0_0000/3.jpg").unwrap();
        assert_eq!((r.label, r.original.as_str()), (0, "id0_0000"));
    }

    #[test]
    fn folders_need_a_label_map_entry() {
        assert_eq!(l(Layout::Folders, "bad/v1/1.png").unwrap().label, 1);
        assert!(l(Layout::Folders, "other/v1/1.png").is_none());
        assert_eq!(l(Layout::StyleGan, "x/1.png").unwrap().label, 1);
        assert_eq!(l(Layout::CelebA, "1.png").unwrap().label, 0);
    }
}
