//! The cluster recipes users copy (scripts/cluster/): the Kubernetes Indexed Job's manifest
//! says what matters, and its container command, run once per index with the variable
//! Kubernetes sets, gives shards that merge into the unsharded run. (The Slurm recipe runs on
//! a real Slurm in scripts/test-slurm.)

#![cfg(feature = "pipeline")]

mod common;

use std::path::{Path, PathBuf};

use common::{generated, named_rows, sorted_lines, stderr};

fn job_docs() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster/extract-job.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

/// The shell command of a Job's first container.
fn command(job: &serde_yaml::Value) -> String {
    let c = &job["spec"]["template"]["spec"]["containers"][0]["command"];
    let parts: Vec<&str> = c.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(&parts[..2], ["sh", "-c"], "{parts:?}");
    parts[2].to_string()
}

#[test]
fn the_kubernetes_indexed_job_says_what_matters() {
    let docs = job_docs();
    assert_eq!(docs.len(), 2, "the extract Job and the merge Job");
    let job = &docs[0];
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert!(spec["parallelism"].as_u64().unwrap() <= n);
    assert!(spec["backoffLimitPerIndex"].as_u64().is_some());
    let cmd = command(job);
    assert!(cmd.contains(&format!("--shard auto/{n}")), "completions {n} and the command agree: {cmd}");
    assert!(command(&docs[1]).contains(&format!("*-of-{n}")), "the merge takes the N shards");
    // Every path the commands use is under a mounted volume, and the volume is declared.
    for doc in &docs {
        let pod = &doc["spec"]["template"]["spec"];
        let mounts: Vec<&str> =
            pod["containers"][0]["volumeMounts"].as_sequence().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
        for word in command(doc).split_whitespace().filter(|w| w.starts_with('/')) {
            assert!(mounts.iter().any(|m| word.starts_with(m)), "{word} is not on a mounted volume {mounts:?}");
        }
        let volume = pod["containers"][0]["volumeMounts"][0]["name"].as_str().unwrap();
        assert!(pod["volumes"].as_sequence().unwrap().iter().any(|v| v["name"] == volume));
        assert_eq!(pod["restartPolicy"], "Never");
    }
}

/// Runs a Job's command as its pod would, with /data on `data` and scmpl the built binary.
fn run_pod(cmd: &str, data: &Path, env: &[(&str, String)]) -> std::process::Output {
    let cmd = cmd.replace("/data", data.to_str().unwrap()).replacen("scmpl ", &format!("{} ", env!("CARGO_BIN_EXE_scmpl")), 1);
    let mut c = std::process::Command::new("sh");
    c.args(["-c", &cmd]).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_indexed_job_command_run_for_each_index_merges_into_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("videos")).unwrap();
    let cp = std::process::Command::new("cp").arg("-r").arg(generated("dfdc")).arg(data.join("videos")).status().unwrap();
    assert!(cp.success());
    for v in ["two_faces.mp4", "zoom_astronaut.mp4"] {
        std::fs::copy(generated(v), data.join("videos").join(v)).unwrap();
    }
    let docs = job_docs();
    let n = docs[0]["spec"]["completions"].as_u64().unwrap();
    for k in 0..n {
        let o = run_pod(&command(&docs[0]), &data, &[("JOB_COMPLETION_INDEX", k.to_string())]);
        assert!(o.status.success(), "index {k}: {}", stderr(&o));
        assert!(data.join(format!("out/shards/{k}-of-{n}/shard.json")).is_file());
    }
    // Outside a scheduler, auto/N says which variables it read.
    let o = run_pod(&command(&docs[0]), &data, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("JOB_COMPLETION_INDEX") && stderr(&o).contains("SLURM_ARRAY_TASK_ID"), "{}", stderr(&o));
    let o = run_pod(&command(&docs[1]), &data, &[]);
    assert!(o.status.success(), "merge: {}", stderr(&o));

    // The same videos in one unsharded run, same flags.
    let whole = dir.path().join("whole");
    let cmd = command(&docs[0]);
    let flags: Vec<&str> = cmd.split(';').next().unwrap().split_whitespace().skip_while(|w| !w.starts_with("--sampling")).take(2).collect();
    let mut args: Vec<PathBuf> = vec!["extract".into(), data.join("videos"), "--out".into(), whole.clone(), "--no-progress".into()];
    args.extend(flags.iter().map(PathBuf::from));
    let o = common::scmpl().args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let merged = data.join("out/merged");
    assert_eq!(sorted_lines(&merged.join("detections.csv")), sorted_lines(&whole.join("detections.csv")));
    let crops = |folder: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = named_rows(&folder.join("faces.csv"))
            .into_iter()
            .map(|r| (format!("{}|{}|{}|{}", r["video_id"], r["frame"], r["face"], r["x1"]), std::fs::read(folder.join(&r["path"])).unwrap()))
            .collect();
        v.sort();
        v
    };
    let (a, b) = (crops(&merged), crops(&whole));
    assert!(!a.is_empty() && a == b, "merged faces and crop bytes equal the unsharded run's");
}
