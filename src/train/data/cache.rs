//! The decoded-crop cache: every crop of a manifest decoded once into raw RGB bytes, in one
//! memory-mapped file, so training epochs read pixels instead of decoding PNGs again.
//!
//! Per manifest, in the cache folder: `crops-<id>.bin` (pixels, one crop after another, never
//! rewritten in place) and `crops-<id>.idx` (one line per crop: offset, width, height, and the
//! source file's size and modification time, then its path). A crop whose file changed or
//! disappeared loses only its own entry: it is decoded again (or left out) at the next open,
//! and its new pixels are appended. When dead bytes outgrow live ones the file is rewritten
//! under a new inode (maps already open stay valid). Opening takes an exclusive `flock` on the
//! folder's lock file, so the tasks of a job array can share one cache.
//!
//! Pixels are stored at their native size, exactly as decoding gives them, so a run with the
//! cache sees the same batches as one without (tested). The working size is the crops' size:
//! extract with `[extract] size` (e.g. 80 for 64-px training) to keep the cache small.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::augment::RgbF32;
use super::Sample;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: not a cache index line ({reason}); delete the cache folder to rebuild it")]
    Index { path: PathBuf, line: usize, reason: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// A source file's identity: size and modification time (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { len: m.len(), mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128 })
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    width: u32,
    height: u32,
    stamp: Stamp,
}

impl Entry {
    fn bytes(&self) -> u64 {
        self.width as u64 * self.height as u64 * 3
    }
}

/// An open cache: its pixels mapped read-only.
pub struct CropCache {
    map: memmap2::Mmap,
}

/// Where one sample's pixels are in a [`CropCache`].
#[derive(Clone)]
pub struct Cached {
    cache: Arc<CropCache>,
    offset: usize,
    width: usize,
    height: usize,
}

impl Cached {
    /// The crop as [`super::read_image`] would give it.
    pub fn image(&self) -> RgbF32 {
        let n = self.width * self.height * 3;
        RgbF32::from_rgb8(self.width, self.height, &self.cache.map[self.offset..self.offset + n])
    }
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cached({}x{} at {})", self.width, self.height, self.offset)
    }
}

/// What opening a cache did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheReport {
    /// Crops found valid in the cache.
    pub reused: usize,
    /// Crops decoded now (new, or changed since they were cached).
    pub decoded: usize,
    /// Crops that could not be read (missing or not an image): left to the loader, which
    /// skips and counts them as without a cache.
    pub unreadable: usize,
    /// Whether the pixel file was rewritten to drop dead entries.
    pub compacted: bool,
    pub bytes: u64,
}

/// The cache files of `manifest` in `dir`.
fn files(dir: &Path, manifest: &Path) -> (PathBuf, PathBuf) {
    let abs = std::path::absolute(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let id = format!("{:016x}", crate::hash::stable_hash(&abs.to_string_lossy()));
    (dir.join(format!("crops-{id}.bin")), dir.join(format!("crops-{id}.idx")))
}

fn read_index(path: &Path) -> Result<HashMap<PathBuf, Entry>, CacheError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: &str| CacheError::Index { path: path.into(), line: i + 1, reason: reason.into() };
        let f: Vec<&str> = line.splitn(6, '\t').collect();
        if f.len() != 6 {
            return Err(bad("expected 6 tab-separated fields"));
        }
        let num = |s: &str| s.parse::<u64>().map_err(|e| bad(&e.to_string()));
        let entry = Entry {
            offset: num(f[0])?,
            width: num(f[1])? as u32,
            height: num(f[2])? as u32,
            stamp: Stamp { len: num(f[3])?, mtime_ns: f[4].parse::<i128>().map_err(|e| bad(&e.to_string()))? },
        };
        out.insert(PathBuf::from(f[5]), entry);
    }
    Ok(out)
}

fn write_index(path: &Path, entries: &HashMap<PathBuf, Entry>) -> Result<(), CacheError> {
    let mut rows: Vec<(&PathBuf, &Entry)> = entries.iter().collect();
    rows.sort_by_key(|(_, e)| e.offset);
    let mut text = String::new();
    for (p, e) in rows {
        text.push_str(&format!("{}\t{}\t{}\t{}\t{}\t{}\n", e.offset, e.width, e.height, e.stamp.len, e.stamp.mtime_ns, p.display()));
    }
    let tmp = path.with_extension("idx.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Decodes one crop to RGB bytes (the same decoding as [`super::read_image`]).
fn decode(path: &Path) -> Option<(u32, u32, Vec<u8>)> {
    let img = image::open(path).ok()?.to_rgb8();
    let (w, h) = img.dimensions();
    (w > 0 && h > 0).then(|| (w, h, img.into_raw()))
}

/// Held while a process builds or reads the index.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(dir: &Path) -> Result<Lock, CacheError> {
        let path = dir.join("lock");
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an open descriptor; released when the file closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(&path)(std::io::Error::last_os_error()));
        }
        Ok(Lock { _file: f })
    }
}

/// Opens (building or updating as needed) the cache of `manifest`'s crops in `dir` for
/// `samples`, decoding with `workers` threads, and points each sample that has pixels in it
/// at them.
pub fn attach(dir: &Path, manifest: &Path, samples: &mut [Sample], workers: usize) -> Result<CacheReport, CacheError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _lock = Lock::take(dir)?;
    let (bin, idx) = files(dir, manifest);
    let mut entries = read_index(&idx)?;
    let mut report = CacheReport::default();
    // Which samples are cached and still match their file, which need decoding.
    let mut wanted: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    wanted.sort();
    wanted.dedup();
    let mut todo: Vec<(PathBuf, Stamp)> = Vec::new();
    for p in &wanted {
        match (stamp(p), entries.get(p)) {
            (Some(s), Some(e)) if e.stamp == s => report.reused += 1,
            (Some(s), _) => {
                entries.remove(p);
                todo.push((p.clone(), s));
            }
            (None, _) => {
                entries.remove(p);
                report.unreadable += 1;
            }
        }
    }
    // Decode the new ones in parallel, in chunks (bounded memory), appending to the file.
    let mut len = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let live: u64 = entries.values().map(Entry::bytes).sum();
    if len > 2 * live.max(1 << 20) {
        // Mostly dead bytes: start a new file with the live entries.
        len = compact(&bin, &mut entries)?;
        report.compacted = true;
    }
    if !todo.is_empty() {
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&bin).map_err(io(&bin))?;
        let workers = workers.max(1);
        for chunk in todo.chunks(256) {
            let decoded: Vec<Option<(u32, u32, Vec<u8>)>> = std::thread::scope(|s| {
                let per = chunk.len().div_ceil(workers);
                let handles: Vec<_> = chunk.chunks(per).map(|part| s.spawn(move || part.iter().map(|(p, _)| decode(p)).collect::<Vec<_>>())).collect();
                handles.into_iter().flat_map(|h| h.join().expect("decoder thread")).collect()
            });
            for ((path, st), d) in chunk.iter().zip(decoded) {
                match d {
                    Some((w, h, px)) if !path.to_string_lossy().contains(['\t', '\n']) => {
                        out.write_all(&px).map_err(io(&bin))?;
                        entries.insert(path.clone(), Entry { offset: len, width: w, height: h, stamp: *st });
                        len += px.len() as u64;
                        report.decoded += 1;
                    }
                    _ => report.unreadable += 1,
                }
            }
        }
        out.sync_data().map_err(io(&bin))?;
    }
    // Pixels are on disk before the index names them.
    write_index(&idx, &entries)?;
    report.bytes = len;
    if len == 0 {
        return Ok(report);
    }
    let file = std::fs::File::open(&bin).map_err(io(&bin))?;
    // SAFETY: the file is only ever appended to, and replaced by rename, never changed in place.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(&bin))?;
    let cache = Arc::new(CropCache { map });
    for s in samples.iter_mut() {
        if let Some(e) = entries.get(&s.path).filter(|e| e.offset + e.bytes() <= len) {
            s.cached = Some(Cached { cache: cache.clone(), offset: e.offset as usize, width: e.width as usize, height: e.height as usize });
        }
    }
    Ok(report)
}

/// Builds or updates the cache of every row of `manifest` (any split, labelled or not): what
/// `scmpl train cache` does ahead of training. Unreadable crops are named in the log.
pub fn build_for_manifest(dir: &Path, manifest: &Path, workers: usize) -> Result<CacheReport, super::DataError> {
    let rows: Vec<crate::manifest::FaceRow> = crate::manifest::read_rows(manifest)?;
    let base = crate::manifest::paths::folder_of(manifest);
    let mut samples: Vec<Sample> =
        rows.into_iter().map(|r| Sample { path: base.join(&r.path), label: -1, video_id: r.video_id, track: r.track, cached: None }).collect();
    let report = attach(dir, manifest, &mut samples, workers)?;
    for s in samples.iter().filter(|s| s.cached.is_none()) {
        tracing::warn!("{}: missing or not a readable image; not cached", s.path.display());
    }
    Ok(report)
}

/// Rewrites `bin` with only the live entries (new offsets); returns its new length.
fn compact(bin: &Path, entries: &mut HashMap<PathBuf, Entry>) -> Result<u64, CacheError> {
    let old = std::fs::read(bin).map_err(io(bin))?;
    let tmp = bin.with_extension("bin.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
    let mut order: Vec<(PathBuf, Entry)> = entries.drain().collect();
    order.sort_by_key(|(_, e)| e.offset);
    let mut len = 0u64;
    for (p, mut e) in order {
        let (a, b) = (e.offset as usize, (e.offset + e.bytes()) as usize);
        if b > old.len() {
            continue;
        }
        out.write_all(&old[a..b]).map_err(io(&tmp))?;
        e.offset = len;
        len += e.bytes();
        entries.insert(p, e);
    }
    out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?.sync_data().map_err(io(&tmp))?;
    std::fs::rename(&tmp, bin).map_err(io(bin))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::super::{Loader, LoaderSpec, Plan};
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, seed: u32) {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + seed) as u8, (y * 5 + seed * 3) as u8, ((x ^ y) + seed) as u8]));
        img.save(path).unwrap();
    }

    fn samples(dir: &Path, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.png"));
                write_png(&path, 40 + i as u32, 30 + 2 * i as u32, i as u32);
                Sample { path, label: (i % 2) as i64, video_id: format!("v{i}"), track: 0, cached: None }
            })
            .collect()
    }

    fn batches(samples: Vec<Sample>) -> Vec<(Vec<f32>, Vec<i64>, Vec<usize>)> {
        let n = samples.len();
        let spec = LoaderSpec { plan: Plan { seed: 777, batch: 4, samples: n, shuffle: true, per_track: 0 }, views: 2, augment: true, size: 32, workers: 2, prefetch: 2 };
        Loader::new(Arc::new(samples), spec, 0, 6).map(|b| (b.pixels, b.labels, b.indices)).collect()
    }

    /// The same seed gives identical batches from the cache and from the PNGs; a changed crop
    /// is decoded again (only it), a deleted one is skipped as without a cache, and a second
    /// open decodes nothing.
    #[test]
    fn cached_batches_equal_decoded_ones_and_only_changed_crops_are_redone() {
        let dir = tempfile::tempdir().unwrap();
        let plain = samples(dir.path(), 10);
        let cache_dir = dir.path().join("cache");
        let manifest = dir.path().join("faces.csv");
        let mut cached = plain.clone();
        let r = attach(&cache_dir, &manifest, &mut cached, 3).unwrap();
        assert_eq!((r.reused, r.decoded, r.unreadable), (0, 10, 0));
        assert!(cached.iter().all(|s| s.cached.is_some()));
        assert_eq!(batches(plain.clone()), batches(cached));

        let mut again = plain.clone();
        let r = attach(&cache_dir, &manifest, &mut again, 3).unwrap();
        assert_eq!((r.reused, r.decoded, r.unreadable), (10, 0, 0));

        // One crop changes (another picture, another size), one disappears.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_png(&plain[3].path, 50, 50, 99);
        std::fs::remove_file(&plain[7].path).unwrap();
        let mut changed = plain.clone();
        let r = attach(&cache_dir, &manifest, &mut changed, 3).unwrap();
        assert_eq!((r.reused, r.decoded, r.unreadable), (8, 1, 1));
        assert!(changed[7].cached.is_none());
        let (with, without) = (batches(changed), batches(plain.clone()));
        assert_eq!(with, without);
        assert!(without.iter().all(|b| !b.2.contains(&7)), "the missing crop is skipped");
        assert_eq!(changed_image(&plain[3]), super::super::read_image(&plain[3].path).unwrap());
    }

    fn changed_image(s: &Sample) -> RgbF32 {
        let mut one = vec![s.clone()];
        let dir = s.path.parent().unwrap().join("cache");
        attach(&dir, &s.path.parent().unwrap().join("faces.csv"), &mut one, 1).unwrap();
        one[0].cached.as_ref().unwrap().image()
    }

    #[test]
    fn mostly_dead_files_are_compacted_and_still_read_right() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let manifest = dir.path().join("faces.csv");
        // Big crops, rewritten: the first generation becomes dead bytes.
        let path = dir.path().join("big.png");
        let mut s = vec![Sample { path: path.clone(), label: 0, video_id: "v".into(), track: 0, cached: None }];
        for gen in 0..4u32 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            write_png(&path, 700, 600, gen);
            s[0].cached = None;
            let r = attach(&cache_dir, &manifest, &mut s, 1).unwrap();
            assert_eq!(r.decoded, 1);
            assert!(r.bytes <= 3 * 700 * 600 * 3, "generation {gen}: {} bytes", r.bytes);
            assert_eq!(s[0].cached.as_ref().unwrap().image(), super::super::read_image(&path).unwrap());
        }
    }
}
