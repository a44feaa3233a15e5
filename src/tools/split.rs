//! `scmpl split`: leak-free splits of a `faces.csv`.
//!
//! Rows are grouped by a key (`original`: a fake and its source share a group; `video`; or
//! `part`), groups are ordered by a seeded stable hash, and whole groups are assigned to splits
//! by ratio of rows (or by part lists), so no group ever straddles two splits. Deterministic:
//! the same input and seed give the same split on every machine.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use super::ToolError;
use crate::hash::stable_hash;
use crate::manifest::{self, paths, FaceRow};

/// What keeps rows together in one split (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Original,
    Video,
    Part,
}

impl GroupBy {
    /// The group of a row. Rows without an original group by their video.
    pub fn key(&self, r: &FaceRow) -> String {
        match self {
            GroupBy::Original if !r.original.is_empty() => format!("{}/{}", r.dataset, r.original),
            GroupBy::Original | GroupBy::Video => format!("{}/{}", r.dataset, r.video_id),
            GroupBy::Part => format!("{}/{}", r.dataset, r.part),
        }
    }
}

/// How rows are spread over splits.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// (split name, fraction of rows); fractions sum to 1.
    Ratios(Vec<(String, f64)>),
    /// (split name, parts); rows of other parts are left out of every split (split "").
    Parts(Vec<(String, Vec<String>)>),
}

/// Parses `0.8,0.1,0.1` (train,val,test) or `0.8,0.2` (train,test).
pub fn parse_ratios(s: &str) -> Result<SplitSpec, ToolError> {
    let bad = |expected: &str| ToolError::BadValue { what: "--ratios", value: s.into(), expected: expected.into() };
    let v: Vec<f64> = s.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad("numbers separated by commas"))?;
    let names: &[&str] = match v.len() {
        2 => &["train", "test"],
        3 => &["train", "val", "test"],
        _ => return Err(bad("give 2 (train,test) or 3 (train,val,test) numbers")),
    };
    let sum: f64 = v.iter().sum();
    if v.iter().any(|x| *x < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(bad("must be >= 0 and sum to 1"));
    }
    Ok(SplitSpec::Ratios(names.iter().map(|n| n.to_string()).zip(v).collect()))
}

/// Parses `train=0,1,2` style part lists.
pub fn parse_parts(items: &[String]) -> Result<SplitSpec, ToolError> {
    let mut out = Vec::new();
    for it in items {
        let (name, parts) = it
            .split_once('=')
            .ok_or_else(|| ToolError::BadValue { what: "--parts", value: it.clone(), expected: "expected NAME=P1,P2".into() })?;
        out.push((name.to_string(), parts.split(',').map(|p| p.trim().to_string()).collect()));
    }
    Ok(SplitSpec::Parts(out))
}

/// Rows per (split, dataset, label).
pub type Counts = BTreeMap<(String, String, String), usize>;

pub fn counts(rows: &[FaceRow]) -> Counts {
    let mut c = Counts::new();
    for r in rows {
        *c.entry((r.split.clone(), r.dataset.clone(), r.label.map(|l| l.to_string()).unwrap_or_default())).or_default() += 1;
    }
    c
}

/// Groups that appear in more than one split (split "" ignored), with their splits.
pub fn straddling(rows: &[FaceRow], by: GroupBy) -> Vec<(String, BTreeSet<String>)> {
    let mut splits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.split.is_empty()) {
        splits.entry(by.key(r)).or_default().insert(r.split.clone());
    }
    splits.into_iter().filter(|(_, s)| s.len() > 1).collect()
}

/// Sets `split` on every row. Returns an error if the result would leak (it cannot, by
/// construction; checked anyway).
pub fn assign(rows: &mut [FaceRow], by: GroupBy, spec: &SplitSpec, seed: u64) -> Result<(), ToolError> {
    let mut group_rows: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.iter() {
        *group_rows.entry(by.key(r)).or_default() += 1;
    }
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    match spec {
        SplitSpec::Ratios(ratios) => {
            let mut groups: Vec<(&String, &usize)> = group_rows.iter().collect();
            groups.sort_by_key(|(k, _)| stable_hash(&format!("{seed}:{k}")));
            let total: usize = rows.len();
            let mut done = 0usize;
            for (k, n) in groups {
                // The split whose cumulative share the middle of this group falls in.
                let at = (done as f64 + *n as f64 / 2.0) / total.max(1) as f64;
                let mut acc = 0.0;
                let mut name = &ratios.last().expect("ratios").0;
                for (s, r) in ratios {
                    acc += r;
                    if at < acc {
                        name = s;
                        break;
                    }
                }
                split_of.insert(k.clone(), name.clone());
                done += n;
            }
        }
        SplitSpec::Parts(parts) => {
            for r in rows.iter() {
                let name = parts.iter().find(|(_, ps)| ps.contains(&r.part)).map(|(n, _)| n.clone()).unwrap_or_default();
                split_of.insert(by.key(r), name);
            }
        }
    }
    for r in rows.iter_mut() {
        r.split = match spec {
            SplitSpec::Parts(parts) => parts.iter().find(|(_, ps)| ps.contains(&r.part)).map(|(n, _)| n.clone()).unwrap_or_default(),
            SplitSpec::Ratios(_) => split_of[&by.key(r)].clone(),
        };
    }
    let leaks = straddling(rows, by);
    if !leaks.is_empty() {
        return Err(ToolError::Leak(leaks.iter().take(5).map(|(k, s)| format!("{k} in {s:?}")).collect::<Vec<_>>().join("; ")));
    }
    Ok(())
}

/// `scmpl split`: splits the faces.csv `faces` and writes it to `out`, paths rebased on `out`'s
/// folder so they stay valid. Returns the split rows.
pub fn split_file(faces: &Path, by: GroupBy, spec: &SplitSpec, seed: u64, out: &Path) -> Result<Vec<FaceRow>, ToolError> {
    let mut rows: Vec<FaceRow> = manifest::read_rows(faces)?;
    assign(&mut rows, by, spec, seed)?;
    let (base, out_dir) = (paths::folder_of(faces), paths::folder_of(out));
    std::fs::create_dir_all(out_dir).map_err(ToolError::io(out_dir))?;
    for r in rows.iter_mut() {
        r.path = paths::rebase(&base.join(&r.path), out_dir)?;
    }
    manifest::write_all(out, &rows)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(video: &str, original: &str, label: u8) -> FaceRow {
        FaceRow { video_id: video.into(), original: original.into(), dataset: "d".into(), label: Some(label), ..Default::default() }
    }

    #[test]
    fn fakes_follow_their_original_and_ratios_hold_roughly() {
        let mut rows = Vec::new();
        for i in 0..200 {
            let o = format!("r{i}");
            rows.push(row(&o, &o, 0));
            rows.push(row(&format!("f{i}"), &o, 1));
        }
        assign(&mut rows, GroupBy::Original, &parse_ratios("0.8,0.1,0.1").unwrap(), 7).unwrap();
        assert!(straddling(&rows, GroupBy::Original).is_empty());
        let train = rows.iter().filter(|r| r.split == "train").count();
        assert!((290..350).contains(&train), "{train}");
        let mut again = rows.clone();
        assign(&mut again, GroupBy::Original, &parse_ratios("0.8,0.1,0.1").unwrap(), 7).unwrap();
        assert_eq!(rows, again, "deterministic");
        // A hand-made leak is seen.
        rows[0].split = "train".into();
        rows[1].split = "test".into();
        assert_eq!(straddling(&rows, GroupBy::Original).len(), 1);
    }

    #[test]
    fn bad_ratios_are_refused() {
        assert!(parse_ratios("0.5,0.2").is_err());
        assert!(parse_ratios("1").is_err());
        assert!(parse_ratios("a,b").is_err());
    }
}
