//! Training data: `faces.csv` rows -> samples -> worker threads that decode (PNG/JPEG, the
//! `image` crate) and augment -> batches, prefetched through bounded channels.
//!
//! The batch of step s is fixed by (seed, s) alone: epoch e's order is a permutation seeded by
//! (seed, e), and each sample's augmentation by (seed, e, index, view). The worker count
//! changes nothing but speed, and a resumed run sees exactly the batches it would have seen.
//! [`augment`]: the reference's augmentations; [`fixture`]: a small real-face training set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};

pub mod augment;
pub mod cache;
pub mod fixture;

use augment::{eval_view, train_view, RgbF32, SampleRng};
use crate::manifest::{self, FaceRow};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error("{manifest}: no labelled rows with split '{split}'{}", if .datasets.is_empty() { String::new() } else { format!(" in datasets {:?}", .datasets) })]
    Empty { manifest: PathBuf, split: String, datasets: Vec<String> },
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    pub label: i64,
    pub video_id: String,
    /// The face's track in its video.
    pub track: u32,
    /// Its decoded pixels in the crop cache, when one is attached ([`cache::attach`]).
    pub cached: Option<cache::Cached>,
}

impl Sample {
    /// The image: from the crop cache when it is there, else decoded from its file (None when
    /// missing or broken).
    pub fn image(&self) -> Option<RgbF32> {
        match &self.cached {
            Some(c) => Some(c.image()),
            None => read_image(&self.path),
        }
    }
}

/// Rows of `manifest` in `split` (and in `datasets`, when not empty) that carry a label.
pub fn load_samples(manifest: &Path, split: &str, datasets: &[String]) -> Result<Vec<Sample>, DataError> {
    select(manifest, split, datasets, |r| r.label.map(i64::from))
}

/// Rows of `manifest` in `split` (and `datasets`), labels ignored (MPL's unlabelled stream).
pub fn load_unlabelled(manifest: &Path, split: &str, datasets: &[String]) -> Result<Vec<Sample>, DataError> {
    select(manifest, split, datasets, |_| Some(-1))
}

/// The rows of `split` (and `datasets`) for which `label` gives a label; an error if none.
fn select(
    manifest: &Path,
    split: &str,
    datasets: &[String],
    label: impl Fn(&FaceRow) -> Option<i64>,
) -> Result<Vec<Sample>, DataError> {
    let rows: Vec<FaceRow> = manifest::read_rows(manifest)?;
    let base = manifest::paths::folder_of(manifest);
    let samples: Vec<Sample> = rows
        .into_iter()
        .filter(|r| r.split == split && (datasets.is_empty() || datasets.contains(&r.dataset)))
        .filter_map(|r| Some(Sample { path: base.join(&r.path), label: label(&r)?, video_id: r.video_id, track: r.track, cached: None }))
        .collect();
    if samples.is_empty() {
        return Err(DataError::Empty { manifest: manifest.into(), split: split.into(), datasets: datasets.to_vec() });
    }
    Ok(samples)
}

/// Reads an image as RGB in [0,1]; None when it is missing or does not decode.
pub fn read_image(path: &Path) -> Option<RgbF32> {
    let img = image::open(path).ok()?.to_rgb8();
    let (w, h) = img.dimensions();
    (w > 0 && h > 0).then(|| RgbF32::from_rgb8(w as usize, h as usize, img.as_raw()))
}

/// Which samples make up each step's batch.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    pub batch: usize,
    pub samples: usize,
    /// Shuffle (training) or walk in order (evaluation, last batch may be short).
    pub shuffle: bool,
    /// > 0: each epoch draws at most this many samples of each face track ([`PerTrack`]), and
    /// `samples` is the size of such an epoch.
    pub per_track: usize,
}

/// The samples of each face track, for drawing at most K of each per epoch.
#[derive(Debug, Clone)]
pub struct PerTrack {
    /// Sample indices of each (video, track), in sample order; tracks in order of first sample.
    groups: Vec<Vec<usize>>,
}

impl PerTrack {
    pub fn new(samples: &[Sample]) -> PerTrack {
        let mut at: std::collections::HashMap<(&str, u32), usize> = std::collections::HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            let g = *at.entry((s.video_id.as_str(), s.track)).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        PerTrack { groups }
    }

    /// How many samples an epoch has with at most `k` per track.
    pub fn epoch_size(&self, k: usize) -> usize {
        self.groups.iter().map(|g| g.len().min(k)).sum()
    }

    /// The samples of `epoch`: at most `k` of each track, drawn with `seed` (the same for the
    /// same seed and epoch), in track order.
    pub fn epoch(&self, k: usize, seed: u64, epoch: u64) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.epoch_size(k));
        for (t, g) in self.groups.iter().enumerate() {
            if g.len() <= k {
                out.extend_from_slice(g);
            } else {
                let perm = SampleRng::new(seed ^ 0x7ac4, epoch, t as u64, 0).permutation(g.len());
                let mut picked: Vec<usize> = perm[..k].iter().map(|&p| g[p]).collect();
                picked.sort_unstable();
                out.extend(picked);
            }
        }
        out
    }
}

impl Plan {
    pub fn steps_per_epoch(&self) -> usize {
        if self.shuffle { (self.samples / self.batch).max(1) } else { self.samples.div_ceil(self.batch) }
    }

    /// (epoch, indices) of step `step`.
    pub fn batch(&self, step: usize) -> (u64, Vec<usize>) {
        let spe = self.steps_per_epoch();
        let (epoch, pos) = (step / spe, step % spe);
        if !self.shuffle {
            let end = ((pos + 1) * self.batch).min(self.samples);
            return (epoch as u64, (pos * self.batch..end).collect());
        }
        let perm = SampleRng::new(self.seed, epoch as u64, u64::MAX, 0).permutation(self.samples);
        let b = self.batch.min(self.samples);
        (epoch as u64, perm[pos * b..(pos + 1) * b].to_vec())
    }
}

/// A batch ready for the device: `views` × n images, view-major, NHWC in [0,1].
pub struct Batch {
    pub step: usize,
    pub views: usize,
    pub n: usize,
    pub size: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
    /// Indices (into the sample list) of the images in the batch, in order.
    pub indices: Vec<usize>,
    /// Samples dropped because their image is missing or broken (with the paths).
    pub skipped: Vec<PathBuf>,
}

/// How batches are made.
#[derive(Debug, Clone, Copy)]
pub struct LoaderSpec {
    pub plan: Plan,
    pub views: usize,
    pub augment: bool,
    pub size: usize,
    pub workers: usize,
    /// Batches each worker may hold ready.
    pub prefetch: usize,
}

/// The batch of `step`; `members` maps an epoch's positions to samples when the plan draws
/// per track (the worker's cached [`PerTrack::epoch`] of that epoch).
fn make_batch(samples: &[Sample], spec: &LoaderSpec, step: usize, members: Option<&[usize]>) -> Batch {
    let (epoch, mut indices) = spec.plan.batch(step);
    if let Some(m) = members {
        indices.iter_mut().for_each(|i| *i = m[*i]);
    }
    let s = spec.size;
    let mut per_view: Vec<Vec<f32>> = vec![Vec::with_capacity(indices.len() * s * s * 3); spec.views];
    let mut labels = Vec::with_capacity(indices.len());
    let mut kept = Vec::with_capacity(indices.len());
    let mut skipped = Vec::new();
    for &i in &indices {
        let sample = &samples[i];
        let Some(img) = sample.image() else {
            skipped.push(sample.path.clone());
            continue;
        };
        for (v, buf) in per_view.iter_mut().enumerate() {
            let out = if spec.augment {
                train_view(&img, s, &mut SampleRng::new(spec.plan.seed, epoch, i as u64, v as u64))
            } else {
                eval_view(&img, s)
            };
            buf.extend_from_slice(&out.data);
        }
        labels.push(sample.label);
        kept.push(i);
    }
    let n = labels.len();
    Batch { step, views: spec.views, n, size: s, pixels: per_view.concat(), labels, indices: kept, skipped }
}

/// Batches for steps `start..end`, made by worker threads, handed out in step order.
pub struct Loader {
    channels: Vec<Receiver<Batch>>,
    next: usize,
    start: usize,
    end: usize,
    _workers: Vec<std::thread::JoinHandle<()>>,
}

impl Loader {
    pub fn new(samples: Arc<Vec<Sample>>, spec: LoaderSpec, start: usize, end: usize) -> Loader {
        let w = spec.workers.max(1);
        let mut channels = Vec::new();
        let mut workers = Vec::new();
        let per_track = (spec.plan.per_track > 0).then(|| Arc::new(PerTrack::new(&samples)));
        for k in 0..w {
            let (tx, rx) = bounded(spec.prefetch.max(1));
            let samples = samples.clone();
            let per_track = per_track.clone();
            workers.push(std::thread::spawn(move || {
                let mut step = start + k;
                // The epoch's members when drawing per track, made once per epoch.
                let mut cached: Option<(u64, Vec<usize>)> = None;
                while step < end {
                    let members = per_track.as_ref().map(|pt| {
                        let epoch = spec.plan.batch(step).0;
                        if cached.as_ref().is_none_or(|c| c.0 != epoch) {
                            cached = Some((epoch, pt.epoch(spec.plan.per_track, spec.plan.seed, epoch)));
                        }
                        cached.as_ref().map(|c| c.1.as_slice()).expect("just cached")
                    });
                    if tx.send(make_batch(&samples, &spec, step, members)).is_err() {
                        return;
                    }
                    step += w;
                }
            }));
            channels.push(rx);
        }
        Loader { channels, next: start, start, end, _workers: workers }
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            return None;
        }
        let k = (self.next - self.start) % self.channels.len();
        let b = self.channels[k].recv().ok()?;
        self.next += 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, shade: u8) {
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([shade, (x * 5) as u8, (y * 7) as u8]));
        img.save(path).unwrap();
    }

    fn fixture(dir: &Path, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("{i}.png"));
                write_png(&p, (i * 20) as u8);
                Sample { path: p, label: (i % 2) as i64, video_id: format!("v{i}"), track: 0, cached: None }
            })
            .collect()
    }

    #[test]
    fn the_worker_count_does_not_change_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let samples = Arc::new(fixture(dir.path(), 10));
        let spec = |workers| LoaderSpec {
            plan: Plan { seed: 7, batch: 4, samples: 10, shuffle: true, per_track: 0 },
            views: 2,
            augment: true,
            size: 16,
            workers,
            prefetch: 2,
        };
        let one: Vec<Batch> = Loader::new(samples.clone(), spec(1), 0, 6).collect();
        let three: Vec<Batch> = Loader::new(samples.clone(), spec(3), 0, 6).collect();
        assert_eq!(one.len(), 6);
        for (a, b) in one.iter().zip(&three) {
            assert_eq!(a.step, b.step);
            assert_eq!(a.labels, b.labels);
            assert!(a.pixels == b.pixels);
            assert_eq!(a.pixels.len(), 2 * 4 * 16 * 16 * 3);
        }
        // Resuming at step 3 gives the same batches 3..6.
        let resumed: Vec<Batch> = Loader::new(samples, spec(2), 3, 6).collect();
        for (a, b) in one[3..].iter().zip(&resumed) {
            assert!(a.pixels == b.pixels && a.step == b.step);
        }
    }

    #[test]
    fn per_track_epochs_draw_at_most_k_faces_of_each_track_anew_each_epoch() {
        let s = |video: &str, track: u32| Sample { path: PathBuf::new(), label: 0, video_id: video.into(), track, cached: None };
        // A long track (10 faces), a short one (2), another video's track 0 (3).
        let mut samples: Vec<Sample> = (0..10).map(|_| s("a", 0)).collect();
        samples.extend([s("a", 1), s("a", 1), s("b", 0), s("b", 0), s("b", 0)]);
        let pt = PerTrack::new(&samples);
        assert_eq!(pt.epoch_size(3), 3 + 2 + 3);
        let e0 = pt.epoch(3, 5, 0);
        assert_eq!(e0.len(), 8);
        assert_eq!(e0.iter().filter(|&&i| i < 10).count(), 3, "3 of the long track");
        assert!([10, 11, 12, 13, 14].iter().all(|i| e0.contains(i)), "short tracks whole");
        assert_eq!(pt.epoch(3, 5, 0), e0, "the same for the same seed and epoch");
        let other: Vec<Vec<usize>> = (1..6).map(|e| pt.epoch(3, 5, e)).collect();
        assert!(other.iter().any(|e| e[..3] != e0[..3]), "drawn anew each epoch");
        // Plan positions map through the epoch's members: every step's samples are members.
        let plan = Plan { seed: 5, batch: 4, samples: 8, shuffle: true, per_track: 3 };
        let (epoch, pos) = plan.batch(1);
        let members = pt.epoch(3, 5, epoch);
        assert!(pos.iter().all(|&p| p < members.len()));
    }

    #[test]
    fn each_epoch_is_a_permutation() {
        let plan = Plan { seed: 1, batch: 3, samples: 9, shuffle: true, per_track: 0 };
        let mut seen: Vec<usize> = (0..3).flat_map(|s| plan.batch(s).1).collect();
        seen.sort();
        assert_eq!(seen, (0..9).collect::<Vec<_>>());
        assert_ne!(plan.batch(0).1, plan.batch(3).1, "epochs are shuffled anew");
    }

    #[test]
    fn broken_and_missing_images_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut samples = fixture(dir.path(), 3);
        std::fs::write(&samples[1].path, b"not a png").unwrap();
        samples.push(Sample { path: dir.path().join("missing.png"), label: 0, video_id: "x".into(), track: 0, cached: None });
        let spec = LoaderSpec {
            plan: Plan { seed: 0, batch: 4, samples: 4, shuffle: false, per_track: 0 },
            views: 1,
            augment: false,
            size: 8,
            workers: 1,
            prefetch: 1,
        };
        let b: Vec<Batch> = Loader::new(Arc::new(samples), spec, 0, 1).collect();
        assert_eq!(b[0].n, 2);
        assert_eq!(b[0].skipped.len(), 2);
    }
}
