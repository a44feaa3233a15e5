//! TensorBoard event files, written by scmpl itself: `RUN/tb/events.out.tfevents.*` holds every
//! scalar of `metrics.csv` (tag `stage/column`, at its step) and the final evaluation, so
//! `tensorboard --logdir runs/` compares runs as DeepfakeBench users do.
//!
//! The format is small and stable: a TFRecord stream (per record: u64 length, masked CRC-32C of
//! the length, the bytes, masked CRC-32C of the bytes) of `tensorflow.Event` protobufs: a first
//! event with `file_version = "brain.Event:2"`, then one per scalar with `wall_time`, `step`
//! and a `Summary` holding one `Value { tag, simple_value }`. No protobuf crate is needed for
//! four fields; [`read_scalars`] reads the files back (tests, and a check of what was written).

use std::io::Write;
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli), as TFRecord uses.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, v) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *v = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, b| table[((c ^ *b as u32) & 0xff) as usize] ^ (c >> 8))
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// An `Event` with wall time, step and either a file version or one scalar.
fn event(wall_time: f64, step: i64, file_version: Option<&str>, scalar: Option<(&str, f32)>) -> Vec<u8> {
    let mut e = Vec::new();
    varint(1 << 3 | 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    varint(2 << 3, &mut e);
    varint(step as u64, &mut e);
    if let Some(v) = file_version {
        bytes_field(3, v.as_bytes(), &mut e);
    }
    if let Some((tag, value)) = scalar {
        let mut val = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut val);
        varint(2 << 3 | 5, &mut val);
        val.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        bytes_field(1, &val, &mut summary);
        bytes_field(5, &summary, &mut e);
    }
    e
}

/// Appends events to one file in a run's `tb/` folder.
pub struct EventWriter {
    file: std::io::BufWriter<std::fs::File>,
    pub path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created), named as TensorBoard expects; a resumed run gets a
    /// file of its own, and TensorBoard reads them together.
    pub fn create(dir: &Path) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into());
        // Two writers of one process in the same second (the steps, then the evaluation) get
        // different names.
        static WRITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("events.out.tfevents.{}.{host}.{}.{n}.scmpl", now.as_secs(), std::process::id()));
        let file = std::fs::OpenOptions::new().create_new(true).write(true).open(&path)?;
        let mut w = EventWriter { file: std::io::BufWriter::new(file), path };
        w.record(&event(now.as_secs_f64(), 0, Some("brain.Event:2"), None))?;
        w.file.flush()?;
        Ok(w)
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.file.write_all(&len)?;
        self.file.write_all(&masked_crc(&len).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc(data).to_le_bytes())
    }

    /// One scalar at `step`.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> std::io::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.record(&event(now.as_secs_f64(), step, None, Some((tag, value))))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Reads a protobuf varint at `*i`.
fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of a protobuf message: (field number, wire type, payload bytes or value bytes).
fn fields(b: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let (field, wire) = (key >> 3, key & 7);
        let start = i;
        let len = match wire {
            0 => {
                read_varint(b, &mut i)?;
                i - start
            }
            1 => 8,
            2 => {
                let n = read_varint(b, &mut i)? as usize;
                out.push((field, wire, b.get(i..i + n)?));
                i += n;
                continue;
            }
            5 => 4,
            _ => return None,
        };
        out.push((field, wire, b.get(start..start + len)?));
        i = start + len;
    }
    Some(out)
}

/// Every scalar of an event file as (tag, step, value), checking every record's CRCs; the
/// error says which record is bad.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, i64, f32)>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |n: usize, what: &str| format!("{}: record {n}: {what}", path.display());
    let (mut i, mut n, mut out) = (0, 0, Vec::new());
    while i < b.len() {
        let len_bytes = b.get(i..i + 8).ok_or_else(|| bad(n, "truncated length"))?;
        let crc = u32::from_le_bytes(b.get(i + 8..i + 12).ok_or_else(|| bad(n, "truncated"))?.try_into().expect("4 bytes"));
        if crc != masked_crc(len_bytes) {
            return Err(bad(n, "length CRC mismatch"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let data = b.get(i + 12..i + 12 + len).ok_or_else(|| bad(n, "truncated data"))?;
        let crc = u32::from_le_bytes(b.get(i + 12 + len..i + 16 + len).ok_or_else(|| bad(n, "truncated"))?.try_into().expect("4 bytes"));
        if crc != masked_crc(data) {
            return Err(bad(n, "data CRC mismatch"));
        }
        let ev = fields(data).ok_or_else(|| bad(n, "not a protobuf message"))?;
        let step = ev.iter().find(|f| f.0 == 2).and_then(|f| read_varint(f.2, &mut 0)).unwrap_or(0) as i64;
        for (_, _, summary) in ev.iter().filter(|f| f.0 == 5) {
            for (_, _, value) in fields(summary).ok_or_else(|| bad(n, "bad summary"))?.iter().filter(|f| f.0 == 1) {
                let vf = fields(value).ok_or_else(|| bad(n, "bad value"))?;
                let tag = vf.iter().find(|f| f.0 == 1).map(|f| String::from_utf8_lossy(f.2).into_owned()).unwrap_or_default();
                if let Some(v) = vf.iter().find(|f| f.0 == 2 && f.1 == 5) {
                    out.push((tag, step, f32::from_le_bytes(v.2.try_into().expect("4 bytes"))));
                }
            }
        }
        i += 16 + len;
        n += 1;
    }
    Ok(out)
}

/// Scalars of one `metrics.csv` row: each numeric column but `step` (and `stage`, which names
/// the tag: `stage/column`).
pub fn row_scalars(header: &[&str], row: &str) -> Option<(i64, Vec<(String, f32)>)> {
    let values: Vec<&str> = row.split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).and_then(|i| values.get(i).copied());
    let step = at("step")?.parse::<i64>().ok()?;
    let stage = at("stage").filter(|s| !s.is_empty());
    let scalars = header
        .iter()
        .zip(&values)
        .filter(|(h, _)| !matches!(**h, "step" | "stage"))
        .filter_map(|(h, v)| v.parse::<f32>().ok().filter(|x| x.is_finite() || x.is_nan()).map(|x| (stage.map_or_else(|| h.to_string(), |s| format!("{s}/{h}")), x)))
        .collect();
    Some((step, scalars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn scalars_round_trip_through_an_event_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("supcon/loss", 1, 4.25).unwrap();
        w.scalar("supcon/lr", 1, 1e-3).unwrap();
        w.scalar("linear/accuracy", 300, 0.875).unwrap();
        w.flush().unwrap();
        // A second writer in the same second and process gets a file of its own.
        let other = EventWriter::create(dir.path()).unwrap();
        assert_ne!(other.path, w.path);
        let back = read_scalars(&w.path).unwrap();
        assert_eq!(back, vec![("supcon/loss".into(), 1, 4.25), ("supcon/lr".into(), 1, 1e-3), ("linear/accuracy".into(), 300, 0.875)]);
        // A flipped byte is caught by the CRC.
        let mut b = std::fs::read(&w.path).unwrap();
        let last = b.len() - 6;
        b[last] ^= 1;
        std::fs::write(&w.path, b).unwrap();
        assert!(read_scalars(&w.path).unwrap_err().contains("CRC"));
    }

    #[test]
    fn metrics_rows_become_tagged_scalars() {
        let header = ["step", "stage", "loss", "accuracy", "images_per_s"];
        let (step, s) = row_scalars(&header, "12,supcon,4.5,,88.2").unwrap();
        assert_eq!(step, 12);
        assert_eq!(s, vec![("supcon/loss".to_string(), 4.5), ("supcon/images_per_s".to_string(), 88.2)]);
        assert!(row_scalars(&header, "x,supcon,1,,1").is_none());
    }
}
