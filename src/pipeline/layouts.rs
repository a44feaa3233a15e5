//! The folder layouts of the video datasets the paper uses, as their releases ship them, so
//! `extract` labels their videos (DFDC's `metadata.json` is read in [`super::scan`]):
//!
//! - FaceForensics++ (its `download-FaceForensics.py`): `original_sequences/youtube/<c>/videos/000.mp4`
//!   (real; original `000`), `manipulated_sequences/<Deepfakes|Face2Face|FaceSwap|NeuralTextures|FaceShifter>/<c>/videos/000_003.mp4`
//!   (fake; original `000`, the target), and the DeepFakeDetection pair
//!   `original_sequences/actors/<c>/videos/01__walking.mp4` /
//!   `manipulated_sequences/DeepFakeDetection/<c>/videos/01_02__walking__ABCD1234.mp4`
//!   (original `01__walking`). `<c>` (raw, c23, c40) starts the video id, the method is the
//!   `part` (`Original` for youtube, `DeepFakeDetection_original` for actors); the official
//!   `splits/{train,val,test}.json` (pairs of ids) give `split` with `--ffpp-splits DIR`.
//! - Celeb-DF (v1 and v2): `Celeb-real/idX_NNNN.mp4` and `YouTube-real/NNNNN.mp4` (real),
//!   `Celeb-synthesis/idX_idY_NNNN.mp4` (fake; original `idX_NNNN`); `List_of_testing_videos.txt`
//!   (`1 path` = real, `0 path` = fake) marks the test split, the rest is train.

use std::collections::HashMap;
use std::path::Path;

use crate::config::ParseError;

/// A dataset layout, found from the folders or forced with `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoLayout {
    /// `metadata.json` beside the videos (`dfdc_train_part_N` folders).
    Dfdc,
    /// FaceForensics++'s `original_sequences` / `manipulated_sequences`.
    Ffpp,
    /// Celeb-DF's `Celeb-real`, `YouTube-real`, `Celeb-synthesis`.
    #[value(name = "celebdf")]
    CelebDf,
    /// Any other folder: dataset `videos`, no labels.
    Videos,
}

/// What a layout says of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub dataset: &'static str,
    pub video_id: String,
    pub label: u8,
    pub original: String,
    pub part: String,
    pub split: String,
}

const FF_METHODS: [&str; 6] = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection"];

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// The official FF++ splits: each id of each pair, and each pair both ways, to its split.
#[derive(Debug, Default, Clone)]
pub struct FfppSplits(HashMap<String, String>);

impl FfppSplits {
    /// Reads `dir/{train,val,test}.json` (lists of `["953", "974"]` pairs).
    pub fn read(dir: &Path) -> Result<FfppSplits, ParseError> {
        let mut map = HashMap::new();
        for split in ["train", "val", "test"] {
            let path = dir.join(format!("{split}.json"));
            let text = std::fs::read_to_string(&path).map_err(|e| ParseError(format!("{}: {e}", path.display())))?;
            let pairs: Vec<Vec<String>> =
                serde_json::from_str(&text).map_err(|e| ParseError(format!("{}: not FF++ split pairs: {e}", path.display())))?;
            for p in pairs {
                if let [a, b] = p.as_slice() {
                    for key in [a.clone(), b.clone(), format!("{a}_{b}"), format!("{b}_{a}")] {
                        map.insert(key, split.to_string());
                    }
                }
            }
        }
        Ok(FfppSplits(map))
    }

    fn of(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// FF++'s rule for the video at path components `parts` (from the file back to the root).
pub fn ffpp(parts: &[String], splits: Option<&FfppSplits>) -> Option<Labelled> {
    let n = parts.len();
    if n < 5 || parts[n - 2] != "videos" {
        return None;
    }
    let (kind, group, c, name) = (parts[n - 5].as_str(), parts[n - 4].as_str(), parts[n - 3].as_str(), stem(&parts[n - 1]));
    let split = |id: &str| splits.map(|s| s.of(id)).unwrap_or_default();
    let (label, part, original) = match (kind, group) {
        ("original_sequences", "youtube") => (0, "Original".to_string(), name.to_string()),
        ("original_sequences", "actors") => (0, "DeepFakeDetection_original".to_string(), name.to_string()),
        ("manipulated_sequences", "DeepFakeDetection") => {
            // 01_02__walking__ABCD1234: target actor 01 in scene walking -> 01__walking.
            let mut it = name.split("__");
            let actors = it.next()?;
            let scene = it.next()?;
            (1, group.to_string(), format!("{}__{scene}", actors.split('_').next()?))
        }
        ("manipulated_sequences", m) if FF_METHODS.contains(&m) => (1, m.to_string(), name.split('_').next()?.to_string()),
        _ => return None,
    };
    let split = if part.starts_with("DeepFakeDetection") { String::new() } else { split(name) };
    Some(Labelled { dataset: "ffpp", video_id: format!("{c}__{part}__{name}"), label, original, part, split })
}

/// Celeb-DF's rule; `tests` maps `Folder/name.mp4` of `List_of_testing_videos.txt` to its label.
pub fn celebdf(parts: &[String], tests: Option<&HashMap<String, u8>>) -> Option<Labelled> {
    let n = parts.len();
    if n < 2 {
        return None;
    }
    let (folder, file) = (parts[n - 2].as_str(), parts[n - 1].as_str());
    let name = stem(file);
    let (label, original) = match folder {
        "Celeb-real" | "YouTube-real" => (0, name.to_string()),
        "Celeb-synthesis" => {
            let p: Vec<&str> = name.split('_').collect();
            let original = if p.len() == 3 { format!("{}_{}", p[0], p[2]) } else { name.to_string() };
            (1, original)
        }
        _ => return None,
    };
    let split = match tests {
        Some(t) if t.contains_key(&format!("{folder}/{file}")) => "test",
        Some(_) => "train",
        None => "",
    };
    Some(Labelled { dataset: "celebdf", video_id: format!("{folder}__{name}"), label, original, part: folder.to_string(), split: split.into() })
}

/// `List_of_testing_videos.txt` of a Celeb-DF root: `Folder/name.mp4` -> its label there
/// (1 = real, 0 = fake: Celeb-DF's own convention, the reverse of scmpl's).
pub fn celebdf_tests(root: &Path) -> Option<Result<HashMap<String, u8>, ParseError>> {
    let path = root.join("List_of_testing_videos.txt");
    let text = std::fs::read_to_string(&path).ok()?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed = line.split_once(' ').and_then(|(l, p)| Some((l.trim().parse::<u8>().ok().filter(|l| *l <= 1)?, p.trim().to_string())));
        match parsed {
            Some((l, p)) => {
                map.insert(p, l);
            }
            None => return Some(Err(ParseError(format!("{}:{}: expected 'LABEL Folder/name.mp4', got '{line}'", path.display(), i + 1)))),
        }
    }
    Some(Ok(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    #[test]
    fn ffpp_release_paths() {
        let mut splits = FfppSplits::default();
        splits.0.insert("000".into(), "train".into());
        splits.0.insert("000_003".into(), "train".into());
        let r = ffpp(&parts("FF/original_sequences/youtube/c23/videos/000.mp4"), Some(&splits)).unwrap();
        assert_eq!((r.label, r.original.as_str(), r.part.as_str(), r.split.as_str(), r.video_id.as_str()), (0, "000", "Original", "train", "c23__Original__000"));
        let f = ffpp(&parts("FF/manipulated_sequences/Face2Face/c40/videos/000_003.mp4"), Some(&splits)).unwrap();
        assert_eq!((f.label, f.original.as_str(), f.part.as_str(), f.split.as_str()), (1, "000", "Face2Face", "train"));
        let d = ffpp(&parts("FF/manipulated_sequences/DeepFakeDetection/raw/videos/01_02__walking__ABCD1234.mp4"), None).unwrap();
        assert_eq!((d.label, d.original.as_str()), (1, "01__walking"));
        let a = ffpp(&parts("FF/original_sequences/actors/raw/videos/01__walking.mp4"), None).unwrap();
        assert_eq!((a.label, a.original.as_str(), a.part.as_str()), (0, "01__walking", "DeepFakeDetection_original"));
        assert!(ffpp(&parts("FF/manipulated_sequences/Unknown/c23/videos/1_2.mp4"), None).is_none());
        assert!(ffpp(&parts("x/y.mp4"), None).is_none());
    }

    #[test]
    fn celebdf_release_paths() {
        let tests: HashMap<String, u8> = [("Celeb-synthesis/id0_id16_0000.mp4".to_string(), 0)].into_iter().collect();
        let f = celebdf(&parts("CDF/Celeb-synthesis/id0_id16_0000.mp4"), Some(&tests)).unwrap();
        assert_eq!((f.label, f.original.as_str(), f.split.as_str()), (1, "id0_0000", "test"));
        let r = celebdf(&parts("CDF/Celeb-real/id0_0000.mp4"), Some(&tests)).unwrap();
        assert_eq!((r.label, r.original.as_str(), r.split.as_str(), r.video_id.as_str()), (0, "id0_0000", "train", "Celeb-real__id0_0000"));
        assert_eq!(celebdf(&parts("CDF/YouTube-real/00170.mp4"), None).unwrap().label, 0);
        assert!(celebdf(&parts("CDF/other/x.mp4"), None).is_none());
    }
}
