//! Sharding: one run of N does the videos whose key hashes to its index K, so N machines (a
//! Slurm job array, a Kubernetes Indexed Job, `xargs -P`) split a dataset with no coordination.
//!
//! The key is the video's `original` (its own id for a real video), so a DFDC original and its
//! fakes are always in one shard. `--shard auto/N` takes K from the scheduler. A sharded run
//! writes into `OUT/shards/K-of-N/` and, when it has gone through all its videos, marks that
//! folder complete with `shard.json` (renamed into place atomically), which `manifest merge`
//! checks before it merges a set of shards.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ParseError;
use crate::hash::stable_hash;

/// The marker of a finished shard.
pub const MARKER: &str = "shard.json";

/// Shard K of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError(format!("invalid shard '{s}': expected K/N with 0 <= K < N, or auto/N"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (k.trim().parse::<u64>().map_err(|_| bad())?, n.trim().parse::<u64>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard does the video whose original is `original`.
    pub fn keeps(&self, original: &str) -> bool {
        stable_hash(original) % self.count == self.index
    }

    /// The shard's own folder under the run's `--out`: `OUT/shards/K-of-N`.
    pub fn folder(&self, out: &Path) -> PathBuf {
        out.join("shards").join(format!("{}-of-{}", self.index, self.count))
    }
}

/// `--shard K/N`, or `--shard auto/N` (K from the scheduler's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    Auto { count: u64 },
}

impl std::str::FromStr for ShardSpec {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.split_once('/') {
            Some(("auto", n)) => match n.trim().parse::<u64>() {
                Ok(count) if count > 0 => Ok(ShardSpec::Auto { count }),
                _ => Err(ParseError(format!("invalid shard '{s}': expected auto/N with N >= 1"))),
            },
            _ => s.parse().map(ShardSpec::Fixed),
        }
    }
}

/// The scheduler variables `--shard auto/N` reads.
pub const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
pub const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
pub const SLURM_MAX: &str = "SLURM_ARRAY_TASK_MAX";
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";

impl ShardSpec {
    /// The shard this task runs. For `auto/N`, K is `JOB_COMPLETION_INDEX` (Kubernetes Indexed
    /// Job) or `SLURM_ARRAY_TASK_ID`; the Slurm id is taken relative to `SLURM_ARRAY_TASK_MIN`
    /// only when the array spans exactly N tasks (`--array=1-N`): a re-run of some tasks
    /// (`--array=3,17`) keeps their own numbers. N always comes from the command line.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ParseError> {
        self.resolve_for("--shard", var)
    }

    /// [`ShardSpec::resolve`], naming `flag` in its errors.
    pub fn resolve_for(self, flag: &str, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ParseError> {
        let count = match self {
            ShardSpec::Fixed(s) => return Ok(s),
            ShardSpec::Auto { count } => count,
        };
        let number = |name: &str| -> Result<Option<u64>, ParseError> {
            var(name)
                .map(|v| v.trim().parse::<u64>().map_err(|_| ParseError(format!("{flag} auto/{count}: {name}={v} is not a number"))))
                .transpose()
        };
        let (index, from) = if let Some(k) = number(K8S_INDEX)? {
            (k, format!("{K8S_INDEX}={k}"))
        } else if let Some(id) = number(SLURM_ID)? {
            let (min, max) = (number(SLURM_MIN)?, number(SLURM_MAX)?);
            match (min, max) {
                (Some(min), Some(max)) if max >= min && max - min + 1 == count && id >= min => {
                    (id - min, format!("{SLURM_ID}={id} - {SLURM_MIN}={min}"))
                }
                _ => (id, format!("{SLURM_ID}={id}")),
            }
        } else {
            return Err(ParseError(format!(
                "{flag} auto/{count}: no index in the environment (read {SLURM_ID}, {SLURM_MIN}, {SLURM_MAX} of a Slurm job array and {K8S_INDEX} of a Kubernetes Indexed Job; none is set). Give {flag} K/{count} outside a scheduler"
            )));
        };
        if index >= count {
            return Err(ParseError(format!("{flag} auto/{count}: {from} gives index {index}, which is not below N = {count}; give the array's size as N")));
        }
        Ok(Shard { index, count })
    }
}

/// What `shard.json` holds: which shard, made how, with what result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub index: u64,
    pub count: u64,
    /// sha256 of the output-changing settings (`PipelineConfig::fingerprint`).
    pub config: String,
    pub videos: usize,
    pub failed: usize,
    pub faces: u64,
}

impl Marker {
    /// Reads the marker of a shard folder (None: the shard never finished).
    pub fn read(dir: &Path) -> Option<Marker> {
        serde_json::from_slice(&std::fs::read(dir.join(MARKER)).ok()?).ok()
    }

    /// Writes it atomically (a temporary file renamed into place).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(self).expect("marker serialises"))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(MARKER))
    }

    /// Removes the marker: a shard being (re)run is not complete until it ends.
    pub fn clear(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(dir.join(MARKER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A short fingerprint of a config's output-changing settings.
pub fn config_hash(fingerprint: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(fingerprint.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_videos() {
        let ids: Vec<String> = (0..300).map(|i| format!("video{i}")).collect();
        let shards: Vec<Shard> = (0..3).map(|k| Shard { index: k, count: 3 }).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.keeps(id)).count(), 1);
        }
        // Roughly balanced.
        for s in &shards {
            let n = ids.iter().filter(|id| s.keeps(id)).count();
            assert!((70..130).contains(&n), "{n}");
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn auto_shards_come_from_the_scheduler() {
        let auto = |n| ShardSpec::Auto { count: n };
        assert_eq!("auto/4".parse::<ShardSpec>().unwrap(), auto(4));
        assert_eq!("2/4".parse::<ShardSpec>().unwrap(), ShardSpec::Fixed(Shard { index: 2, count: 4 }));
        assert!("auto/0".parse::<ShardSpec>().is_err() && "auto/x".parse::<ShardSpec>().is_err());
        let k = |vars: &[(&str, &str)], n| auto(n).resolve(env(vars)).map(|s| s.index);
        // Slurm, a 0-based array of 4.
        assert_eq!(k(&[(SLURM_ID, "3"), (SLURM_MIN, "0"), (SLURM_MAX, "3")], 4), Ok(3));
        // A 1-based array of 4 (--array=1-4): relative to its first task.
        assert_eq!(k(&[(SLURM_ID, "1"), (SLURM_MIN, "1"), (SLURM_MAX, "4")], 4), Ok(0));
        assert_eq!(k(&[(SLURM_ID, "4"), (SLURM_MIN, "1"), (SLURM_MAX, "4")], 4), Ok(3));
        // Some tasks of a 0-based array of 20 re-run (--array=3,17): their own numbers.
        assert_eq!(k(&[(SLURM_ID, "17"), (SLURM_MIN, "3"), (SLURM_MAX, "17")], 20), Ok(17));
        assert_eq!(k(&[(SLURM_ID, "3"), (SLURM_MIN, "3"), (SLURM_MAX, "3")], 20), Ok(3));
        // Kubernetes.
        assert_eq!(k(&[(K8S_INDEX, "2")], 3), Ok(2));
        // None set, or out of range: errors naming the variables.
        let none = k(&[], 4).unwrap_err().0;
        assert!(none.contains(SLURM_ID) && none.contains(K8S_INDEX), "{none}");
        let over = k(&[(SLURM_ID, "7")], 4).unwrap_err().0;
        assert!(over.contains("SLURM_ARRAY_TASK_ID=7") && over.contains("N = 4") && over.contains("--shard"), "{over}");
        assert!(k(&[(K8S_INDEX, "x")], 4).is_err());
        // A fixed shard ignores the environment.
        assert_eq!(ShardSpec::Fixed(Shard { index: 1, count: 2 }).resolve(env(&[(K8S_INDEX, "0")])).unwrap().index, 1);
    }

    #[test]
    fn markers_round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Marker::read(dir.path()).is_none());
        let m = Marker { index: 1, count: 4, config: config_hash("x"), videos: 3, failed: 1, faces: 20 };
        m.write(dir.path()).unwrap();
        assert_eq!(Marker::read(dir.path()), Some(m));
        Marker::clear(dir.path()).unwrap();
        Marker::clear(dir.path()).unwrap();
        assert!(Marker::read(dir.path()).is_none());
    }
}
