//! Keyframes and face tracks: the detector runs on every `keyframe_interval`-th sampled frame
//! of a video, faces are linked from one keyframe to the next, and the frames in between get
//! their boxes, landmarks and scores interpolated along each link.
//!
//! Interpolation is only trusted where the two keyframes around a gap agree: the same number of
//! faces, each matched one-to-one at IoU >= `track_iou`, and no scene cut in between. Where they
//! disagree (a face appears, leaves, jumps, or the picture cuts) the middle frame of the gap is
//! detected and both halves are checked again (bisection), down to single frames: a face is
//! never invented by interpolation, and a box is never dragged across a cut.
//!
//! [`Keyframes`] holds one video's frames while this happens; it is generic over what a frame
//! carries, so `extract`/`detect` (the detector thread) and `predict` share it. Track ids are
//! given in frame order by [`Tracker`]: per video, from 0, the same on every rerun.

use super::detect::{DetectorConfig, Face};
use super::image::BgrImage;

/// How a face's box came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The detector found it on this frame.
    Detected,
    /// Interpolated between the detections of two keyframes.
    Interpolated,
}

impl Source {
    /// The word in `detections.csv`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Detected => "detected",
            Source::Interpolated => "interpolated",
        }
    }
}

/// A face of a frame with its track (per video) and how its box was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedFace {
    pub face: Face,
    pub track: u32,
    pub source: Source,
}

/// A coarse picture of a frame for telling scene cuts from motion: the mean brightness of an
/// 8x8 grid of cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thumb([u8; 64]);

impl Thumb {
    pub fn of(img: &BgrImage) -> Thumb {
        let (w, h) = (img.width.max(1), img.height.max(1));
        let mut sums = [0u64; 64];
        let mut counts = [0u64; 64];
        // Every other pixel of every other row: plenty for cell means.
        for y in (0..img.height).step_by(2) {
            let cy = y * 8 / h;
            let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
            for x in (0..img.width).step_by(2) {
                let cell = cy * 8 + x * 8 / w;
                let p = &row[x * 3..x * 3 + 3];
                sums[cell] += (p[0] as u64 * 114 + p[1] as u64 * 587 + p[2] as u64 * 299) / 1000;
                counts[cell] += 1;
            }
        }
        let mut t = [0u8; 64];
        for i in 0..64 {
            t[i] = if counts[i] == 0 { 0 } else { (sums[i] / counts[i]) as u8 };
        }
        Thumb(t)
    }

    /// Mean absolute difference of the cells, 0 (same) to 255.
    pub fn distance(&self, other: &Thumb) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs()).sum::<u32>() as f32 / 64.0
    }
}

/// The settings of keyframing and tracking (from `[detector]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackSettings {
    /// Detect every Nth sampled frame (1 = every sampled frame).
    pub keyframe_interval: u64,
    /// Faces of two frames are the same face at this IoU or more.
    pub track_iou: f32,
    /// Two consecutive sampled frames whose [`Thumb`]s differ by more than this are a cut.
    pub cut_threshold: f32,
    /// Faces are only interpolated between detections scoring this much or more: a face near
    /// the detector's threshold may be missed on the frames between, so those are detected.
    pub confident: f32,
}

impl TrackSettings {
    pub fn of(config: &DetectorConfig) -> TrackSettings {
        TrackSettings {
            keyframe_interval: config.keyframe_interval.max(1),
            track_iou: config.track_iou,
            cut_threshold: config.cut_threshold,
            confident: (1.0 + config.score_threshold) / 2.0,
        }
    }
}

/// Pairs the faces of `a` and `b` greedily by IoU (best pair first), keeping pairs at
/// `min_iou` or more. Returns (index in a, index in b) pairs.
pub fn match_faces(a: &[Face], b: &[Face], min_iou: f32) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (i, fa) in a.iter().enumerate() {
        for (j, fb) in b.iter().enumerate() {
            let iou = fa.iou(fb);
            if iou >= min_iou {
                candidates.push((iou, i, j));
            }
        }
    }
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut pairs = Vec::new();
    for (_, i, j) in candidates {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            pairs.push((i, j));
        }
    }
    pairs.sort();
    pairs
}

/// The pairs of a one-to-one match of every face of `a` with one of `b`, or None; None too
/// when a face scores under `confident` at either end.
fn agreement(a: &[Face], b: &[Face], min_iou: f32, confident: f32) -> Option<Vec<(usize, usize)>> {
    if a.len() != b.len() || a.iter().chain(b).any(|f| f.score < confident) {
        return None;
    }
    let pairs = match_faces(a, b, min_iou);
    (pairs.len() == a.len()).then_some(pairs)
}

/// `a` moved towards `b` by `t` (0..1): box, landmarks and score, rounded as manifests keep them.
fn lerp(a: &Face, b: &Face, t: f32) -> Face {
    let l = |x: f32, y: f32| x + (y - x) * t;
    let mut lm = [0.0; 10];
    for (i, v) in lm.iter_mut().enumerate() {
        *v = l(a.landmarks[i], b.landmarks[i]);
    }
    super::faces::rounded(&Face { x1: l(a.x1, b.x1), y1: l(a.y1, b.y1), x2: l(a.x2, b.x2), y2: l(a.y2, b.y2), score: l(a.score, b.score), landmarks: lm })
}

/// Gives track ids to the faces of a video's frames, in frame order.
#[derive(Debug, Default)]
pub struct Tracker {
    previous: Vec<(Face, u32)>,
    next: u32,
}

impl Tracker {
    /// The tracks of one frame's faces: each face continues the track of the previous frame's
    /// face it overlaps most (IoU >= `min_iou`, one-to-one), or starts a new one. `cut`: the
    /// picture changed, every track ends.
    pub fn assign(&mut self, faces: &[Face], cut: bool, min_iou: f32) -> Vec<u32> {
        if cut {
            self.previous.clear();
        }
        let prev: Vec<Face> = self.previous.iter().map(|p| p.0).collect();
        let mut ids: Vec<Option<u32>> = vec![None; faces.len()];
        for (i, j) in match_faces(&prev, faces, min_iou) {
            ids[j] = Some(self.previous[i].1);
        }
        let ids: Vec<u32> = ids
            .into_iter()
            .map(|id| {
                id.unwrap_or_else(|| {
                    self.next += 1;
                    self.next - 1
                })
            })
            .collect();
        self.previous = faces.iter().copied().zip(ids.iter().copied()).collect();
        ids
    }
}

/// The faces of one frame as a [`Keyframes`] resolves them.
pub type FrameFaces = Result<Vec<TrackedFace>, String>;

struct Slot<T> {
    item: T,
    ordinal: u64,
    /// The picture differs from the previous sampled frame's.
    cut: bool,
    faces: Option<Vec<Face>>,
    source: Source,
}

/// One video's frames waiting for their faces (see the module's documentation).
pub struct Keyframes<T> {
    settings: TrackSettings,
    /// Frames not yet resolved, in order.
    slots: Vec<Slot<T>>,
    /// The last resolved keyframe's faces: the left end of the next gap.
    anchor: Option<Vec<Face>>,
    last_thumb: Option<Thumb>,
    next_ordinal: u64,
    tracker: Tracker,
    /// Frames the detector ran on, and frames interpolated.
    pub detected: u64,
    pub interpolated: u64,
}

/// The detection function a [`Keyframes`] calls: faces (full-frame pixels, selected as the run
/// says) of each frame given.
pub type DetectFn<'a, T> = dyn FnMut(&[&T]) -> Result<Vec<Vec<Face>>, String> + 'a;

impl<T> Keyframes<T> {
    pub fn new(settings: TrackSettings) -> Self {
        Keyframes { settings, slots: Vec::new(), anchor: None, last_thumb: None, next_ordinal: 0, tracker: Tracker::default(), detected: 0, interpolated: 0 }
    }

    /// Adds the next sampled frame of the video; `thumb` is [`Thumb::of`] its picture.
    pub fn push(&mut self, item: T, thumb: Thumb) {
        let cut = self.last_thumb.is_some_and(|t| t.distance(&thumb) > self.settings.cut_threshold);
        self.last_thumb = Some(thumb);
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        self.slots.push(Slot { item, ordinal, cut, faces: None, source: Source::Detected });
    }

    fn is_key(&self, s: &Slot<T>) -> bool {
        s.ordinal % self.settings.keyframe_interval == 0
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Keyframes waiting for the detector.
    pub fn keyframes_waiting(&self) -> usize {
        self.slots.iter().filter(|s| self.is_key(s)).count()
    }

    /// Resolves the waiting frames up to the last keyframe among them (every frame when `end`:
    /// the video has ended and its last frame is a keyframe too): detects keyframes and the
    /// frames of gaps they disagree on, interpolates the rest, gives track ids. Returns those
    /// frames in order with their faces; frames after the last keyframe keep waiting.
    /// A detector error fails every frame of this call.
    pub fn resolve(&mut self, end: bool, detect: &mut DetectFn<'_, T>) -> Vec<(T, FrameFaces)> {
        let Some(last) = (if end { self.slots.len().checked_sub(1) } else { self.slots.iter().rposition(|s| self.is_key(s)) }) else {
            return Vec::new();
        };
        let result = self.find_faces(last, detect);
        let slots: Vec<Slot<T>> = self.slots.drain(..=last).collect();
        if let Err(e) = result {
            self.anchor = None;
            return slots.into_iter().map(|s| (s.item, Err(e.clone()))).collect();
        }
        self.anchor = slots.last().and_then(|s| s.faces.clone());
        let min_iou = self.settings.track_iou;
        slots
            .into_iter()
            .map(|s| {
                let faces = s.faces.expect("every slot up to the last keyframe is resolved");
                let tracks = self.tracker.assign(&faces, s.cut, min_iou);
                match s.source {
                    Source::Detected => self.detected += 1,
                    Source::Interpolated => self.interpolated += 1,
                }
                let tracked = faces.into_iter().zip(tracks).map(|(face, track)| TrackedFace { face, track, source: s.source }).collect();
                (s.item, Ok(tracked))
            })
            .collect()
    }

    /// Fills `faces` of slots `0..=last`.
    fn find_faces(&mut self, last: usize, detect: &mut DetectFn<'_, T>) -> Result<(), String> {
        let keys: Vec<usize> = (0..=last).filter(|&p| p == last || self.is_key(&self.slots[p])).collect();
        self.detect_at(&keys, detect)?;
        // Positions with known faces; -1 is the anchor (the previous call's last keyframe).
        loop {
            let known: Vec<isize> = self.anchor.iter().map(|_| -1).chain((0..=last as isize).filter(|&p| self.slots[p as usize].faces.is_some())).collect();
            let middles: Vec<usize> = known
                .windows(2)
                .filter(|w| w[1] - w[0] > 1 && self.gap_pairs(w[0], w[1]).is_none())
                .map(|w| ((w[0] + w[1]) / 2) as usize)
                .collect();
            if middles.is_empty() {
                for w in known.windows(2).filter(|w| w[1] - w[0] > 1) {
                    self.interpolate(w[0], w[1]);
                }
                // Frames before the first known one (only without an anchor, where position 0 is
                // always a keyframe) cannot exist.
                return Ok(());
            }
            self.detect_at(&middles, detect)?;
        }
    }

    fn faces_at(&self, p: isize) -> &[Face] {
        if p < 0 { self.anchor.as_deref().unwrap_or(&[]) } else { self.slots[p as usize].faces.as_deref().expect("known") }
    }

    /// The face pairs along which gap `(a, b)` can be interpolated, or None when its ends disagree.
    fn gap_pairs(&self, a: isize, b: isize) -> Option<Vec<(usize, usize)>> {
        if ((a + 1)..=b).any(|p| self.slots[p as usize].cut) {
            return None;
        }
        agreement(self.faces_at(a), self.faces_at(b), self.settings.track_iou, self.settings.confident)
    }

    fn interpolate(&mut self, a: isize, b: isize) {
        let pairs = self.gap_pairs(a, b).expect("only agreeing gaps are interpolated");
        let (fa, fb) = (self.faces_at(a).to_vec(), self.faces_at(b).to_vec());
        let ord = |p: isize, this: &Self| if p < 0 { this.slots[0].ordinal - 1 } else { this.slots[p as usize].ordinal };
        let (oa, ob) = (ord(a, self), ord(b, self));
        for p in (a + 1)..b {
            let t = (ord(p, self) - oa) as f32 / (ob - oa) as f32;
            let faces = pairs.iter().map(|&(i, j)| lerp(&fa[i], &fb[j], t)).collect();
            let slot = &mut self.slots[p as usize];
            slot.faces = Some(faces);
            slot.source = Source::Interpolated;
        }
    }

    fn detect_at(&mut self, positions: &[usize], detect: &mut DetectFn<'_, T>) -> Result<(), String> {
        let todo: Vec<usize> = positions.iter().copied().filter(|&p| self.slots[p].faces.is_none()).collect();
        if todo.is_empty() {
            return Ok(());
        }
        let items: Vec<&T> = todo.iter().map(|&p| &self.slots[p].item).collect();
        let found = detect(&items)?;
        if found.len() != todo.len() {
            return Err(format!("the detector gave faces for {} of {} frames", found.len(), todo.len()));
        }
        for (p, faces) in todo.into_iter().zip(found) {
            self.slots[p].faces = Some(faces);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, side: f32) -> Face {
        Face { x1: x, y1: y, x2: x + side, y2: y + side, score: 0.9, landmarks: [x; 10] }
    }

    fn settings(k: u64) -> TrackSettings {
        TrackSettings { keyframe_interval: k, track_iou: 0.5, cut_threshold: 30.0, confident: 0.85 }
    }

    /// A synthetic video: the faces of frame i, and which frames the detector was asked for.
    fn run(truth: &dyn Fn(u64) -> Vec<Face>, frames: u64, k: u64, cut_at: Option<u64>) -> (Vec<FrameFaces>, Vec<u64>) {
        let mut kf: Keyframes<u64> = Keyframes::new(settings(k));
        let mut asked = Vec::new();
        let mut out = Vec::new();
        let mut detect = |items: &[&u64]| -> Result<Vec<Vec<Face>>, String> {
            asked.extend(items.iter().map(|i| **i));
            Ok(items.iter().map(|i| truth(**i)).collect())
        };
        for i in 0..frames {
            let shade = if cut_at.is_some_and(|c| i >= c) { 200 } else { 10 };
            kf.push(i, Thumb([shade; 64]));
            if kf.keyframes_waiting() >= 2 {
                out.extend(kf.resolve(false, &mut detect).into_iter().map(|(_, f)| f));
            }
        }
        out.extend(kf.resolve(true, &mut detect).into_iter().map(|(_, f)| f));
        asked.sort();
        (out, asked)
    }

    #[test]
    fn a_steady_face_is_detected_on_keyframes_only_and_interpolated_between() {
        let truth = |i: u64| vec![face(100.0 + i as f32, 50.0, 80.0)];
        let (out, asked) = run(&truth, 20, 4, None);
        assert_eq!(asked, vec![0, 4, 8, 12, 16, 19]);
        assert_eq!(out.len(), 20);
        for (i, f) in out.iter().enumerate() {
            let f = f.as_ref().unwrap();
            assert_eq!(f.len(), 1);
            assert!((f[0].face.x1 - (100.0 + i as f32)).abs() < 0.01, "frame {i}: linear motion is interpolated exactly");
            assert_eq!(f[0].track, 0);
            assert_eq!(f[0].source == Source::Detected, asked.contains(&(i as u64)));
        }
    }

    #[test]
    fn a_face_that_appears_between_keyframes_is_found_by_bisection() {
        // A second face from frame 6 on: gap 4..8 disagrees, 6 then 5 are detected.
        let truth = |i: u64| {
            let mut v = vec![face(0.0, 0.0, 50.0)];
            if i >= 6 {
                v.push(face(300.0, 0.0, 50.0));
            }
            v
        };
        let (out, asked) = run(&truth, 12, 4, None);
        assert_eq!(asked, vec![0, 4, 5, 6, 8, 11]);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(f.as_ref().unwrap().len(), truth(i as u64).len(), "frame {i}");
        }
        let tracks: Vec<u32> = out[7].as_ref().unwrap().iter().map(|f| f.track).collect();
        assert_eq!(tracks, vec![0, 1]);
    }

    #[test]
    fn a_cut_is_never_interpolated_across_and_ends_every_track() {
        // The face stays put, but the picture cuts at frame 6.
        let truth = |_| vec![face(10.0, 10.0, 60.0)];
        let (out, asked) = run(&truth, 12, 4, Some(6));
        assert!(asked.contains(&5) && asked.contains(&6), "both sides of the cut are detected: {asked:?}");
        let track = |i: usize| out[i].as_ref().unwrap()[0].track;
        assert_eq!(track(5), 0);
        assert_eq!(track(6), 1);
        assert_eq!(track(11), 1);
    }

    #[test]
    fn interval_one_detects_every_frame() {
        let truth = |i: u64| vec![face(i as f32 * 30.0, 0.0, 20.0)];
        let (out, asked) = run(&truth, 7, 1, None);
        assert_eq!(asked, (0..7).collect::<Vec<_>>());
        // Moving 30 px a frame with 20 px boxes: no overlap, a new track every frame.
        assert_eq!(out[6].as_ref().unwrap()[0].track, 6);
    }

    #[test]
    fn a_detector_error_fails_the_frames_of_the_call() {
        let mut kf: Keyframes<u64> = Keyframes::new(settings(2));
        for i in 0..5 {
            kf.push(i, Thumb([0; 64]));
        }
        let out = kf.resolve(true, &mut |_: &[&u64]| Err("boom".to_string()));
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|(_, f)| f.as_ref().is_err_and(|e| e == "boom")));
    }

    #[test]
    fn thumbs_tell_a_cut_from_a_small_change() {
        let mut a = BgrImage::new(64, 48, vec![40; 64 * 48 * 3]);
        let t0 = Thumb::of(&a);
        a.data[..300].fill(60);
        assert!(t0.distance(&Thumb::of(&a)) < 5.0);
        let b = BgrImage::new(64, 48, vec![180; 64 * 48 * 3]);
        assert!(t0.distance(&Thumb::of(&b)) > 100.0);
    }
}
