//! `scmpl eval`: a trained run's classifier on a manifest, frame level and video level, per
//! domain, with metrics from scores (see [`crate::metrics`]); `--protocol paper` adds the
//! reference's numbers (mean accuracy of 100 shuffled batches of 512, "AUC" from hard labels)
//! so results compare with the paper's tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::data::Sample;
use super::infer::Classifier;
use super::{io_err, TrainError};
use crate::manifest::{self, paths, FaceRow};
use crate::metrics::{self, Metrics};

/// How rows are grouped into domains (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Dataset,
    /// dataset/part.
    Part,
    /// The split column (the paper protocol's set names).
    #[value(alias = "split")]
    Domain,
}

impl GroupBy {
    fn domain_of(by: Option<GroupBy>, r: &FaceRow) -> String {
        match by {
            Some(GroupBy::Dataset) => r.dataset.clone(),
            Some(GroupBy::Part) => format!("{}/{}", r.dataset, r.part),
            Some(GroupBy::Domain) => r.split.clone(),
            None => "all".into(),
        }
    }
}

/// Metrics of one domain.
#[derive(Debug, serde::Serialize)]
pub struct DomainReport {
    pub domain: String,
    pub frame: Metrics,
    pub video_mean: Metrics,
    pub video_max: Metrics,
    /// One score per face track (the mean along it), labelled with its video's label.
    pub track: Metrics,
    /// One score per video: the highest of its tracks' means (one swapped face among real ones
    /// is not averaged away).
    pub video_track_max: Metrics,
    /// The reference's scoring, with --protocol paper.
    pub paper_accuracy: Option<f64>,
    pub paper_hard_auc: Option<f64>,
    /// Frame-level ROC points (fpr, tpr), for the picture.
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// The reference's accuracy: the mean over 100 batches of 512 rows drawn at random.
fn paper_accuracy(labels: &[u8], probs: &[f64], seed: u64) -> f64 {
    let mut acc = 0.0;
    for b in 0..100u64 {
        let mut right = 0;
        let n = 512.min(labels.len());
        for k in 0..n {
            let i = (crate::hash::stable_hash(&format!("{seed}:{b}:{k}")) % labels.len() as u64) as usize;
            if (probs[i] >= 0.5) == (labels[i] == 1) {
                right += 1;
            }
        }
        acc += right as f64 / n as f64;
    }
    acc / 100.0
}

/// The levels the report gives, in order, with their metrics.
impl DomainReport {
    pub fn levels(&self) -> [(&'static str, &Metrics); 5] {
        [("frame", &self.frame), ("video_mean", &self.video_mean), ("video_max", &self.video_max), ("track", &self.track), ("video_track_max", &self.video_track_max)]
    }
}

/// Per-track and per-video-from-tracks scores of faces given as (video, track, label, p):
/// (track labels, track means, video labels, each video's highest track mean).
pub fn track_scores<'a>(faces: impl Iterator<Item = (&'a str, u32, u8, f64)>) -> (Vec<u8>, Vec<f64>, Vec<u8>, Vec<f64>) {
    let mut tracks: BTreeMap<(&str, u32), (u8, f64, usize)> = BTreeMap::new();
    for (video, track, label, p) in faces {
        let t = tracks.entry((video, track)).or_insert((label, 0.0, 0));
        t.1 += p;
        t.2 += 1;
    }
    let (mut tl, mut tp) = (Vec::new(), Vec::new());
    let mut videos: BTreeMap<&str, (u8, f64)> = BTreeMap::new();
    for ((video, _), (label, sum, n)) in tracks {
        let mean = sum / n as f64;
        tl.push(label);
        tp.push(mean);
        let v = videos.entry(video).or_insert((label, 0.0));
        v.1 = v.1.max(mean);
    }
    let (vl, vp) = videos.into_values().unzip();
    (tl, tp, vl, vp)
}

/// Evaluates `run` on the labelled rows of `manifest`, grouped by `by` (dataset, part, split or
/// none). Writes `out/metrics.csv` and `out/metrics.json`; returns the reports.
pub fn run(run: &Path, manifest_path: &Path, by: Option<GroupBy>, paper: bool, device: &str, out: &Path) -> Result<Vec<DomainReport>, TrainError> {
    let det = Classifier::load(run, device)?;
    let rows: Vec<FaceRow> = manifest::read_rows(manifest_path)?;
    let base = paths::folder_of(manifest_path);
    let rows: Vec<FaceRow> = rows.into_iter().filter(|r| r.label.is_some()).collect();
    if rows.is_empty() {
        return Err(TrainError::NothingToEvaluate(manifest_path.to_path_buf()));
    }
    let samples: Arc<Vec<Sample>> = Arc::new(
        rows.iter().map(|r| Sample { path: base.join(&r.path), label: r.label.unwrap_or(0) as i64, video_id: r.video_id.clone(), track: r.track, cached: None }).collect(),
    );
    let probs = det.probabilities(&samples)?;
    let domain_of = |r: &FaceRow| GroupBy::domain_of(by, r);
    let mut groups: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    let mut unreadable = 0;
    for (i, r) in rows.iter().enumerate() {
        match probs[i] {
            Some(p) => groups.entry(domain_of(r)).or_default().push((i, p)),
            None => unreadable += 1,
        }
    }
    if unreadable > 0 {
        tracing::warn!("{unreadable} images could not be read and were left out");
    }
    let mut reports = Vec::new();
    for (domain, items) in groups {
        let labels: Vec<u8> = items.iter().map(|(i, _)| rows[*i].label.unwrap_or(0)).collect();
        let ps: Vec<f64> = items.iter().map(|(_, p)| *p).collect();
        let mut videos: BTreeMap<&str, (u8, Vec<f64>)> = BTreeMap::new();
        for (i, p) in &items {
            videos.entry(rows[*i].video_id.as_str()).or_insert((rows[*i].label.unwrap_or(0), Vec::new())).1.push(*p);
        }
        let vl: Vec<u8> = videos.values().map(|v| v.0).collect();
        let vmean: Vec<f64> = videos.values().map(|v| v.1.iter().sum::<f64>() / v.1.len() as f64).collect();
        let vmax: Vec<f64> = videos.values().map(|v| v.1.iter().cloned().fold(0.0, f64::max)).collect();
        let hard: Vec<f64> = ps.iter().map(|p| if *p >= 0.5 { 1.0 } else { 0.0 }).collect();
        let (tl, tp, tvl, tvp) = track_scores(items.iter().map(|(i, p)| (rows[*i].video_id.as_str(), rows[*i].track, rows[*i].label.unwrap_or(0), *p)));
        reports.push(DomainReport {
            domain,
            frame: metrics::compute(&labels, &ps),
            video_mean: metrics::compute(&vl, &vmean),
            video_max: metrics::compute(&vl, &vmax),
            track: metrics::compute(&tl, &tp),
            video_track_max: metrics::compute(&tvl, &tvp),
            paper_accuracy: paper.then(|| paper_accuracy(&labels, &ps, 777)),
            paper_hard_auc: if paper { metrics::auc(&labels, &hard) } else { None },
            roc: metrics::roc(&labels, &ps),
        });
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let json = serde_json::json!({ "run": run, "model": det.which, "manifest": manifest_path, "domains": reports });
    let jp: PathBuf = out.join("metrics.json");
    std::fs::write(&jp, serde_json::to_string_pretty(&json).expect("json")).map_err(io_err(&jp))?;
    let mut csv = String::from("domain,level,n,real,fake,accuracy,auc,eer,ap,log_loss\n");
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_else(|| "undefined".into());
    for r in &reports {
        for (level, m) in r.levels() {
            csv.push_str(&format!(
                "{},{level},{},{},{},{:.6},{},{},{},{:.6}\n",
                r.domain, m.n, m.real, m.fake, m.accuracy, f(m.auc), f(m.eer), f(m.ap), m.log_loss
            ));
        }
    }
    let cp = out.join("metrics.csv");
    std::fs::write(&cp, csv).map_err(io_err(&cp))?;
    Ok(reports)
}

/// The metrics of one run's evaluation, read back from its `metrics.csv`: (domain, level) ->
/// metric -> value (metrics that were undefined are left out).
pub type RunMetrics = BTreeMap<(String, String), BTreeMap<&'static str, f64>>;

/// The metrics `summarize` averages.
pub const SUMMARY_METRICS: [&str; 5] = ["accuracy", "auc", "eer", "ap", "log_loss"];

/// Reads `out/metrics.csv` as [`eval::run`](run) wrote it.
pub fn read_reports(out: &Path) -> Result<RunMetrics, TrainError> {
    let path = out.join("metrics.csv");
    let csv_err = |e: csv::Error| TrainError::Io { path: path.clone(), source: std::io::Error::other(e.to_string()) };
    let mut r = csv::Reader::from_path(&path).map_err(csv_err)?;
    let headers = r.headers().map_err(csv_err)?.clone();
    let col = |rec: &csv::StringRecord, name: &str| headers.iter().position(|h| h == name).and_then(|i| rec.get(i)).unwrap_or("").to_string();
    let mut runs = RunMetrics::new();
    for rec in r.records() {
        let rec = rec.map_err(csv_err)?;
        let values = SUMMARY_METRICS.iter().filter_map(|m| col(&rec, m).parse::<f64>().ok().map(|v| (*m, v))).collect();
        runs.insert((col(&rec, "domain"), col(&rec, "level")), values);
    }
    Ok(runs)
}

/// One metric of one domain and level over several runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub domain: String,
    pub level: String,
    pub metric: &'static str,
    pub mean: f64,
    /// Sample standard deviation (0 for one run).
    pub sd: f64,
    /// Runs in which the metric was defined.
    pub runs: usize,
}

/// Mean and spread of every metric over `runs` (seeds, folds), per domain and level.
pub fn summarize(runs: &[RunMetrics]) -> Vec<SummaryRow> {
    let mut keys: Vec<&(String, String)> = runs.iter().flat_map(|r| r.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    for key in keys {
        for metric in SUMMARY_METRICS {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.get(key).and_then(|m| m.get(metric)).copied()).collect();
            if v.is_empty() {
                continue;
            }
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let sd = if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt() } else { 0.0 };
            rows.push(SummaryRow { domain: key.0.clone(), level: key.1.clone(), metric, mean, sd, runs: v.len() });
        }
    }
    rows
}

/// Writes `out/summary.csv`.
pub fn write_summary(rows: &[SummaryRow], out: &Path) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut csv = String::from("domain,level,metric,mean,sd,runs\n");
    for r in rows {
        csv.push_str(&format!("{},{},{},{:.6},{:.6},{}\n", r.domain, r.level, r.metric, r.mean, r.sd, r.runs));
    }
    let path = out.join("summary.csv");
    std::fs::write(&path, csv).map_err(io_err(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_swapped_face_flags_its_video_by_track_max_not_by_mean() {
        // A fake video with a real-looking track (0.1) and a swapped one (0.9, shorter), and a
        // real video with one track.
        let faces = [("f", 0, 1, 0.1), ("f", 0, 1, 0.1), ("f", 0, 1, 0.1), ("f", 1, 1, 0.9), ("f", 1, 1, 0.9), ("r", 0, 0, 0.2)];
        let (tl, tp, vl, vp) = track_scores(faces.iter().copied());
        assert_eq!(tl, vec![1, 1, 0]);
        assert!((tp[0] - 0.1).abs() < 1e-12 && (tp[1] - 0.9).abs() < 1e-12);
        assert_eq!(vl, vec![1, 0]);
        assert!((vp[0] - 0.9).abs() < 1e-12, "the video takes its worst track: {vp:?}");
        let mean_f = faces.iter().filter(|f| f.0 == "f").map(|f| f.3).sum::<f64>() / 5.0;
        assert!(mean_f < 0.5, "the plain mean would call it real: {mean_f}");
    }

    #[test]
    fn several_runs_summarise_to_mean_and_sample_sd() {
        let run = |acc: f64, auc: Option<f64>| -> RunMetrics {
            let mut m: BTreeMap<&'static str, f64> = [("accuracy", acc)].into_iter().collect();
            if let Some(a) = auc {
                m.insert("auc", a);
            }
            [(("all".to_string(), "frame".to_string()), m)].into_iter().collect()
        };
        let rows = summarize(&[run(0.8, Some(0.9)), run(0.9, None), run(1.0, Some(0.7))]);
        let acc = rows.iter().find(|r| r.metric == "accuracy").unwrap();
        assert!((acc.mean - 0.9).abs() < 1e-12 && (acc.sd - 0.1).abs() < 1e-12 && acc.runs == 3, "{acc:?}");
        let auc = rows.iter().find(|r| r.metric == "auc").unwrap();
        assert_eq!(auc.runs, 2, "an undefined AUC is left out, not averaged as 0");
        assert!((auc.mean - 0.8).abs() < 1e-12);
    }
}
