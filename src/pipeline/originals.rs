//! DFDC: detect once per original. A DFDC fake is a re-rendering of its `original` with the
//! same framing, so the original's faces are the fake's: the original goes through the
//! detector, then each fake is decoded and cropped at the original's committed boxes when its
//! width, height and frame count match (same sampled frames); a fake that differs is detected
//! itself, and counted. An original and its fakes share a shard (shards go by original), so a
//! fake's boxes are always in its own run's manifests; after a crash, the rerun finds the
//! committed originals and crops their fakes. `--detect-fakes` turns this off.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::config::ExtractSettings;
use super::tracks::TrackedFace;
use super::journal::Journal;
use super::recrop::{crop_all, tracked_of, Work};
use super::scan::VideoJob;
use super::{decode, ExtractError, Mode, RunOptions, Summary};
use crate::manifest::{self, DetectionRow, VideoRow, VideoStatus};

/// Splits `jobs` into those to detect now and the fakes that wait for their original (it is
/// among `jobs`, or already committed in `journal`).
pub(crate) fn defer_fakes(jobs: Vec<VideoJob>, journal: &Journal) -> (Vec<VideoJob>, Vec<VideoJob>) {
    let ids: HashSet<String> = jobs.iter().map(|j| j.video_id.clone()).collect();
    jobs.into_iter().partition(|j| {
        let is_fake = j.dataset == "dfdc" && j.label == Some(1) && j.original != j.video_id;
        !(is_fake && (ids.contains(&j.original) || journal.is_finished(&j.original)))
    })
}

/// What reusing the originals' detections did.
#[derive(Debug, Default)]
pub struct Reuse {
    /// Fakes cropped at their original's boxes (one detector pass per frame saved each).
    pub fakes: usize,
    /// Sampled frames of those fakes the detector did not see.
    pub frames_saved: u64,
    /// Fakes detected themselves, with why.
    pub detected: Vec<String>,
}

/// Crops (or, for `detect`, re-decodes) each deferred fake at its committed original's
/// detections; returns the fakes that must be detected themselves.
pub(crate) fn reuse(
    fakes: Vec<VideoJob>,
    settings: &ExtractSettings,
    opts: &RunOptions,
    journal: &mut Journal,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<VideoJob>, ExtractError> {
    if fakes.is_empty() {
        return Ok(fakes);
    }
    let out = &opts.out;
    let videos: HashMap<String, VideoRow> =
        manifest::read_rows::<VideoRow>(&out.join(manifest::VIDEOS))?.into_iter().map(|v| (v.video_id.clone(), v)).collect();
    let wanted: HashSet<&str> = fakes.iter().map(|f| f.original.as_str()).collect();
    let det_path = out.join(manifest::DETECTIONS);
    let mut boxes: HashMap<String, BTreeMap<u64, Vec<(u32, TrackedFace)>>> = HashMap::new();
    for (i, d) in manifest::read_rows::<DetectionRow>(&det_path)?.into_iter().enumerate() {
        if wanted.contains(d.video_id.as_str()) {
            let face = tracked_of(&d, &det_path, i as u64 + 2)?;
            boxes.entry(d.video_id.clone()).or_default().entry(d.frame).or_default().push((d.face, face));
        }
    }
    let mut work = Vec::new();
    let mut detect_them = Vec::new();
    for job in fakes {
        let Some(original) = videos.get(&job.original).filter(|o| o.status == VideoStatus::Ok) else {
            summary.reuse.detected.push(format!("{}: its original {} did not decode cleanly", job.path.display(), job.original));
            detect_them.push(job);
            continue;
        };
        let info = match decode::probe(&job.path) {
            Ok(info) => info,
            Err(_) => {
                detect_them.push(job); // its own run says why it fails
                continue;
            }
        };
        if (info.width, info.height, info.frames) != (original.width, original.height, original.frames) {
            summary.reuse.detected.push(format!(
                "{}: {}x{}, {} frames, its original {} {}x{}, {} frames",
                job.path.display(),
                info.width,
                info.height,
                info.frames,
                original.video_id,
                original.width,
                original.height,
                original.frames
            ));
            detect_them.push(job);
            continue;
        }
        let frames: BTreeMap<u64, Vec<TrackedFace>> = boxes
            .get(&job.original)
            .map(|by_frame| {
                by_frame
                    .iter()
                    .map(|(f, faces)| {
                        let mut faces = faces.clone();
                        faces.sort_by_key(|(i, _)| *i);
                        (*f, faces.into_iter().map(|(_, face)| face).collect())
                    })
                    .collect()
            })
            .unwrap_or_default();
        summary.reuse.fakes += 1;
        summary.reuse.frames_saved += settings.sampling.pick(info.frames).count(info.frames);
        let row = VideoRow { video_id: job.video_id.clone(), status: VideoStatus::Ok, ..Default::default() };
        work.push(Work { row, job, frames });
    }
    crop_all(work, opts.mode == Mode::Extract, settings, opts, journal, summary, bar)?;
    Ok(detect_them)
}
