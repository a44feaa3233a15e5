//! Video probing and decoding with FFmpeg (`ffmpeg-next`).
//!
//! [`probe`] reads what a video is (codec, size, fps, frame count, rotation) without decoding;
//! [`decode`] walks its frames in presentation order and hands the sampled ones, converted to
//! packed BGR and turned upright, to a callback, together with a downscaled copy for the detector.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ffmpeg_next as ffmpeg;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;

use crate::config::ParseError;
use crate::pipeline::image::BgrImage;

/// What went wrong with one video. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: cannot open: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path}: no video stream")]
    NoVideoStream { path: PathBuf },
    #[error("{path}: cannot decode {codec}: {reason}")]
    Codec { path: PathBuf, codec: String, reason: String },
    #[error("{path}: not a regular file ({kind}); give video files or folders")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path}: no frame could be decoded{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    NoFrames { path: PathBuf, reason: Option<String> },
    #[error("{path}: decoding stopped at frame {frame}: {reason}")]
    Decode { path: PathBuf, frame: u64, reason: String },
}

/// Which frames of a video go on to detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Every frame.
    All,
    /// Frames 0, N, 2N, ...
    Stride(u64),
    /// N frames evenly spaced over the whole video (first and last included).
    Count(u64),
}

impl FromStr for Sampling {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError(format!("invalid sampling '{s}': expected all, stride:N or count:N with N >= 1"));
        let num = |v: &str| v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(bad);
        match s.split_once(':') {
            None if s == "all" => Ok(Sampling::All),
            Some(("stride", n)) => Ok(Sampling::Stride(num(n)?)),
            Some(("count", n)) => Ok(Sampling::Count(num(n)?)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sampling::All => write!(f, "all"),
            Sampling::Stride(n) => write!(f, "stride:{n}"),
            Sampling::Count(n) => write!(f, "count:{n}"),
        }
    }
}

impl Sampling {
    /// The frame indices picked from a video of `total` frames, ascending. For `count:N`,
    /// `floor(linspace(0, total-1, N))` without repeats (DeepfakeBench's rule).
    pub fn pick(&self, total: u64) -> FramePicker {
        match *self {
            Sampling::All => FramePicker::Stride(1),
            Sampling::Stride(n) => FramePicker::Stride(n),
            Sampling::Count(n) => {
                let mut v: Vec<u64> = if total == 0 {
                    Vec::new()
                } else if n == 1 || total == 1 {
                    vec![0]
                } else {
                    (0..n).map(|i| (i as f64 * (total - 1) as f64 / (n - 1) as f64).floor() as u64).collect()
                };
                v.dedup();
                FramePicker::List(v)
            }
        }
    }
}

/// Decides, frame by frame, whether a frame is sampled.
#[derive(Debug, Clone)]
pub enum FramePicker {
    Stride(u64),
    List(Vec<u64>),
}

impl FramePicker {
    /// How many of a video's `total` frames are picked.
    pub fn count(&self, total: u64) -> u64 {
        (0..total).filter(|i| self.wants(*i)).count() as u64
    }

    pub fn wants(&self, index: u64) -> bool {
        match self {
            FramePicker::Stride(n) => index % n == 0,
            FramePicker::List(v) => v.binary_search(&index).is_ok(),
        }
    }
    /// True once no frame at or after `index` is wanted (decoding can stop).
    pub fn done_after(&self, index: u64) -> bool {
        match self {
            FramePicker::Stride(_) => false,
            FramePicker::List(v) => v.last().is_none_or(|last| index >= *last),
        }
    }
}

/// What [`probe`] learns about a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub codec: String,
    /// Displayed size (after rotation).
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Frame count from the container, or counted by demuxing when the container has none.
    pub frames: u64,
    /// Clockwise rotation to apply for display: 0, 90, 180 or 270.
    pub rotation: u32,
}

static INIT: std::sync::Once = std::sync::Once::new();

/// Initialises FFmpeg once and quiets its log (errors reach the user through `VideoError`).
pub fn init() {
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// FFmpeg library versions, for `scmpl doctor`.
pub fn ffmpeg_versions() -> String {
    let v = |n: u32| format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
    format!(
        "libavformat {} / libavcodec {} / libswscale {}",
        v(ffmpeg::format::version()),
        v(ffmpeg::codec::version()),
        v(ffmpeg::software::scaling::version())
    )
}

/// What kind of non-regular file `meta` describes, for messages.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_socket() => "a socket",
        _ if t.is_block_device() || t.is_char_device() => "a device",
        _ if t.is_dir() => "a folder",
        _ => "not a file",
    }
}

/// Opens `path` as a file, whatever its name: FFmpeg gets its absolute path as bytes behind
/// an explicit `file:` protocol, so a name that is not UTF-8 or holds a colon (`pipe:0.mp4`,
/// `take:1.mp4`) is never read as a URL, and nothing but regular files is opened.
fn open(path: &Path) -> Result<ffmpeg::format::context::Input, VideoError> {
    use std::os::unix::ffi::OsStrExt;
    init();
    let open_err = |reason: String| VideoError::Open { path: path.into(), reason };
    let meta = std::fs::metadata(path).map_err(|e| open_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(VideoError::NotAFile { path: path.into(), kind: file_kind(&meta) });
    }
    if meta.len() == 0 {
        return Err(open_err("file is empty (0 bytes)".into()));
    }
    let abs = std::path::absolute(path).map_err(|e| open_err(e.to_string()))?;
    let mut url = b"file:".to_vec();
    url.extend_from_slice(abs.as_os_str().as_bytes());
    let url = std::ffi::CString::new(url).map_err(|_| open_err("the path holds a NUL byte".into()))?;
    // SAFETY: what ffmpeg-next's `format::input` does, with our own C string: on success the
    // context is owned by the returned `Input`, on failure it is closed here.
    unsafe {
        let mut ps = std::ptr::null_mut();
        match ffmpeg::ffi::avformat_open_input(&mut ps, url.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut()) {
            0 => match ffmpeg::ffi::avformat_find_stream_info(ps, std::ptr::null_mut()) {
                r if r >= 0 => Ok(ffmpeg::format::context::Input::wrap(ps)),
                e => {
                    ffmpeg::ffi::avformat_close_input(&mut ps);
                    Err(open_err(ffmpeg::Error::from(e).to_string()))
                }
            },
            e => Err(open_err(ffmpeg::Error::from(e).to_string())),
        }
    }
}

/// Clockwise display rotation from the stream's display matrix (0 when there is none).
fn rotation_of(stream: &ffmpeg::format::stream::Stream) -> u32 {
    for sd in stream.side_data() {
        if sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix && sd.data().len() >= 36 {
            let matrix = sd.data().as_ptr() as *const i32;
            // av_display_rotation_get gives the counter-clockwise angle.
            let ccw = unsafe { ffmpeg::ffi::av_display_rotation_get(matrix) };
            if ccw.is_nan() {
                return 0;
            }
            let cw = (-ccw).round() as i64;
            return (((cw % 360) + 360) % 360 / 90 * 90) as u32;
        }
    }
    0
}

fn rational(r: ffmpeg::Rational) -> f64 {
    if r.denominator() == 0 { 0.0 } else { r.numerator() as f64 / r.denominator() as f64 }
}

/// Opens a video and reads its stream parameters; counts frames by demuxing when the
/// container does not say.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    let mut ictx = open(path)?;
    let (index, mut info) = {
        let stream = ictx
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| VideoError::NoVideoStream { path: path.into() })?;
        let params = stream.parameters();
        let ctx = ffmpeg::codec::context::Context::from_parameters(params).map_err(|e| VideoError::Codec {
            path: path.into(),
            codec: "?".into(),
            reason: e.to_string(),
        })?;
        let codec = ctx.id();
        let codec_name = format!("{codec:?}").to_lowercase();
        let decoder = ctx.decoder().video().map_err(|e| VideoError::Codec {
            path: path.into(),
            codec: codec_name.clone(),
            reason: e.to_string(),
        })?;
        let (w, h) = (decoder.width(), decoder.height());
        if w == 0 || h == 0 {
            let reason = format!("the stream gives no frame size ({w}x{h}): no keyframe or no decodable picture in it");
            return Err(VideoError::NoFrames { path: path.into(), reason: Some(reason) });
        }
        let rotation = rotation_of(&stream);
        let (width, height) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
        let mut fps = rational(stream.avg_frame_rate());
        if fps <= 0.0 {
            fps = rational(stream.rate());
        }
        let frames = stream.frames().max(0) as u64;
        (stream.index(), VideoInfo { codec: codec_name, width, height, fps, frames, rotation })
    };
    if info.frames == 0 {
        let mut n = 0;
        loop {
            // A fresh packet each read (see `decode`).
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut ictx) {
                Ok(()) if packet.stream() == index => n += 1,
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(_) => break,
            }
        }
        info.frames = n;
    }
    Ok(info)
}

/// One sampled frame: full resolution for cropping, a small copy for the detector.
pub struct DecodedFrame {
    /// Index in presentation order, from 0.
    pub index: u64,
    /// Presentation time in seconds (from the stream's time base), or the index over fps.
    pub pts: f64,
    pub full: BgrImage,
    /// `full` scaled by `small_scale` (both sides), for the detector.
    pub small: BgrImage,
    pub small_scale: f32,
}

/// How [`decode`] ended for one video.
#[derive(Debug, Default)]
pub struct DecodeSummary {
    /// Frames decoded (sampled or not).
    pub decoded: u64,
    /// Frames handed to the callback.
    pub sampled: u64,
    /// The stream is truncated or corrupt after some frames were read: the frames before are
    /// kept, and this says what happened, in words (the video's row is `partial`).
    pub warning: Option<String>,
}

/// How the detector's copy of a frame is sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DetectorCopy {
    /// Scaled to fit in a square of this side.
    Fit(u32),
    /// Scaled to fit in a square of `side`, and by `max_scale` at most: no larger than the
    /// smallest face the run keeps needs.
    FitAtMost { side: u32, max_scale: f32 },
    /// Scaled by this factor (sides rounded down, as `size // 2` does).
    Scale(f32),
}

impl DetectorCopy {
    /// Width, height and scale of the copy of a `width`×`height` frame.
    pub fn size(self, width: u32, height: u32) -> (u32, u32, f32) {
        match self {
            DetectorCopy::Fit(side) => detector_size(width, height, side),
            DetectorCopy::FitAtMost { side, max_scale } => {
                let (w, h, scale) = detector_size(width, height, side);
                if scale <= max_scale {
                    return (w, h, scale);
                }
                let (w, h) = (((width as f32 * max_scale).round() as u32).max(1), ((height as f32 * max_scale).round() as u32).max(1));
                (w, h, max_scale)
            }
            DetectorCopy::Scale(k) => {
                (((width as f64 * k as f64) as u32).max(1), ((height as f64 * k as f64) as u32).max(1), k)
            }
        }
    }
}

/// Size of the detector copy: the frame scaled to fit in `max_side`² (never zero).
pub fn detector_size(width: u32, height: u32, max_side: u32) -> (u32, u32, f32) {
    let scale = (max_side as f32 / width as f32).min(max_side as f32 / height as f32);
    let w = ((width as f32 * scale).round() as u32).clamp(1, max_side);
    let h = ((height as f32 * scale).round() as u32).clamp(1, max_side);
    (w, h, scale)
}

/// Decodes `path`, calling `on_frame` for every frame `picker` wants (see [`Sampling::pick`]),
/// in presentation order.
/// `copy` sizes the detector's copy of each frame. `on_frame`
/// returns false to stop early. `threads` is FFmpeg's decoding thread count (0 = auto).
pub fn decode(
    path: &Path,
    info: &VideoInfo,
    picker: &FramePicker,
    copy: DetectorCopy,
    threads: usize,
    mut on_frame: impl FnMut(DecodedFrame) -> bool,
) -> Result<DecodeSummary, VideoError> {
    let mut ictx = open(path)?;
    let (index, time_base, mut decoder) = {
        let stream = ictx
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| VideoError::NoVideoStream { path: path.into() })?;
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| VideoError::Codec { path: path.into(), codec: info.codec.clone(), reason: e.to_string() })?;
        ctx.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: threads,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| VideoError::Codec { path: path.into(), codec: info.codec.clone(), reason: e.to_string() })?;
        (stream.index(), stream.time_base(), decoder)
    };
    let rotation = info.rotation;
    let mut summary = DecodeSummary::default();
    let mut scalers: Option<(Pixel, u32, u32, scaling::Context, scaling::Context, f32)> = None;
    let mut frame = ffmpeg::frame::Video::empty();
    let mut bgr = ffmpeg::frame::Video::empty();
    let mut small = ffmpeg::frame::Video::empty();
    let mut stop = false;
    let mut first_error: Option<String> = None;

    // Drains decoded frames; returns Err on a scaler failure.
    let mut drain = |decoder: &mut ffmpeg::decoder::Video,
                     summary: &mut DecodeSummary,
                     stop: &mut bool|
     -> Result<(), VideoError> {
        while !*stop && decoder.receive_frame(&mut frame).is_ok() {
            let i = summary.decoded;
            summary.decoded += 1;
            if !picker.wants(i) {
                if picker.done_after(i) {
                    *stop = true;
                }
                continue;
            }
            let (fw, fh, fmt) = (frame.width(), frame.height(), frame.format());
            let rebuild = !matches!(&scalers, Some((f, w, h, ..)) if *f == fmt && *w == fw && *h == fh);
            if rebuild {
                let (dw, dh) = if rotation % 180 == 90 { (fh, fw) } else { (fw, fh) };
                let (sw, sh, scale) = copy.size(dw, dh);
                let (sw, sh) = if rotation % 180 == 90 { (sh, sw) } else { (sw, sh) };
                let err = |e: ffmpeg::Error| VideoError::Codec {
                    path: path.into(),
                    codec: info.codec.clone(),
                    reason: format!("no converter from {fmt:?} {fw}x{fh} to BGR: {e}"),
                };
                let full = scaling::Context::get(fmt, fw, fh, Pixel::BGR24, fw, fh, scaling::Flags::BILINEAR).map_err(err)?;
                let down = scaling::Context::get(fmt, fw, fh, Pixel::BGR24, sw, sh, scaling::Flags::AREA).map_err(err)?;
                scalers = Some((fmt, fw, fh, full, down, scale));
                // A new size mid-stream: the output frames are allocated anew at the new size.
                bgr = ffmpeg::frame::Video::empty();
                small = ffmpeg::frame::Video::empty();
            }
            let (_, _, _, full_scaler, small_scaler, scale) = scalers.as_mut().expect("scalers built above");
            let scale = *scale;
            let conv = |e: ffmpeg::Error| VideoError::Decode { path: path.into(), frame: i, reason: e.to_string() };
            full_scaler.run(&frame, &mut bgr).map_err(conv)?;
            small_scaler.run(&frame, &mut small).map_err(conv)?;
            let full = BgrImage::from_strided(bgr.width() as usize, bgr.height() as usize, bgr.stride(0), bgr.data(0))
                .rotated_clockwise(rotation);
            let small_img =
                BgrImage::from_strided(small.width() as usize, small.height() as usize, small.stride(0), small.data(0))
                    .rotated_clockwise(rotation);
            let pts = frame
                .timestamp()
                .map(|t| t as f64 * rational(time_base))
                .unwrap_or(i as f64 / info.fps.max(1e-9));
            summary.sampled += 1;
            if !on_frame(DecodedFrame { index: i, pts, full, small: small_img, small_scale: scale }) || picker.done_after(i) {
                *stop = true;
            }
        }
        Ok(())
    };

    loop {
        if stop {
            break;
        }
        // A fresh packet each read: av_read_frame does not release what the packet held, so a
        // reused one leaked the packets find_stream_info had buffered (~40 KB a video; RSS grew
        // by ~0.3 MB a video over hundreds of videos). Dropping unrefs it.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => {
                if packet.stream() != index {
                    continue;
                }
                if let Err(e) = decoder.send_packet(&packet) {
                    first_error.get_or_insert_with(|| format!("bad packet after frame {}: {e}", summary.decoded));
                }
                drain(&mut decoder, &mut summary, &mut stop)?;
            }
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => {
                first_error.get_or_insert_with(|| format!("corrupt data after frame {}", summary.decoded));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| format!("read error after frame {}: {e}", summary.decoded));
                break;
            }
        }
    }
    if !stop {
        let _ = decoder.send_eof();
        drain(&mut decoder, &mut summary, &mut stop)?;
    }
    if summary.decoded == 0 {
        return Err(VideoError::NoFrames { path: path.into(), reason: first_error });
    }
    let short = info.frames > 0 && summary.decoded < info.frames && !stop;
    let why = first_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
    summary.warning = if short && why.is_empty() {
        Some(format!("decoded {} of {} frames: stream truncated (it ends early)", summary.decoded, info.frames))
    } else if short {
        Some(format!("decoded {} of {} frames: stream truncated or corrupt{why}", summary.decoded, info.frames))
    } else {
        first_error.map(|e| format!("corrupt data in the stream, frames after it decoded ({e})"))
    };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_parses_and_rejects() {
        assert_eq!("all".parse::<Sampling>().unwrap(), Sampling::All);
        assert_eq!("stride:5".parse::<Sampling>().unwrap(), Sampling::Stride(5));
        assert_eq!("count:32".parse::<Sampling>().unwrap(), Sampling::Count(32));
        for bad in ["count:0", "stride:", "every:3", "count:-1", ""] {
            assert!(bad.parse::<Sampling>().is_err(), "{bad}");
        }
    }

    #[test]
    fn count_sampling_spans_the_whole_video() {
        let FramePicker::List(v) = Sampling::Count(4).pick(300) else { panic!() };
        assert_eq!(v, vec![0, 99, 199, 299]);
        let FramePicker::List(v) = Sampling::Count(10).pick(3) else { panic!() };
        assert_eq!(v, vec![0, 1, 2]);
        let FramePicker::List(v) = Sampling::Count(1).pick(50) else { panic!() };
        assert_eq!(v, vec![0]);
    }

    #[test]
    fn detector_copy_fits_the_square() {
        assert_eq!(detector_size(1920, 1080, 640), (640, 360, 1.0 / 3.0));
        let (w, h, _) = detector_size(331, 247, 640);
        assert_eq!((w, h), (640, 478));
        assert_eq!(DetectorCopy::Scale(0.5).size(1921, 1080), (960, 540, 0.5));
        assert_eq!(DetectorCopy::Fit(640).size(1920, 1080), (640, 360, 1.0 / 3.0));
        assert_eq!(DetectorCopy::FitAtMost { side: 640, max_scale: 0.2 }.size(1920, 1080), (384, 216, 0.2));
        assert_eq!(DetectorCopy::FitAtMost { side: 640, max_scale: 0.5 }.size(1920, 1080), (640, 360, 1.0 / 3.0));
    }
}
