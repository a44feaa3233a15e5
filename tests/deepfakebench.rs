//! `manifest export --format deepfakebench`, loaded the way DeepfakeBench loads a dataset
//! (scripts/check-deepfakebench.py follows its abstract_dataset.py step by step): every frame
//! resolves to an image from DeepfakeBench's own folder, and the frames per dataset, mode and
//! label are the manifest's labelled rows, one face per frame.

#![cfg(feature = "train")]

mod common;

use std::collections::BTreeMap;

use common::{media, named_rows, run, stderr};

#[test]
fn a_deepfakebench_export_loads_in_deepfakebench_s_loader() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("fixture");
    let o = run(&["train", "fixture", "--lfw", media("lfw_subset.npy").to_str().unwrap(), "--out", fx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Spread the fixture's rows over datasets DeepfakeBench knows (DFDC, FF++ with methods,
    // Celeb-DF) and one it does not; add a second, smaller face to a frame and an unlabelled row.
    let text = std::fs::read_to_string(fx.join("faces.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines.remove(0);
    let mut out_lines = vec![header.clone()];
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        let fake = f[idx("label")] == "1";
        let (ds, part) = match i % 4 {
            0 => ("dfdc", "4"),
            1 => ("ffpp", if fake { "Face2Face" } else { "Original" }),
            2 => ("celebdf", if fake { "Celeb-synthesis" } else { "Celeb-real" }),
            _ => ("fixture", ""),
        };
        f[idx("dataset")] = ds.into();
        f[idx("part")] = part.into();
        out_lines.push(f.join(","));
        if i == 0 {
            let mut small = f.clone();
            small[idx("face")] = "1".into();
            small[idx("x2")] = "5".into();
            small[idx("y2")] = "5".into();
            out_lines.push(small.join(","));
            let mut unl = f.clone();
            unl[idx("label")] = "".into();
            unl[idx("frame")] = "1".into();
            out_lines.push(unl.join(","));
        }
    }
    let manifest = fx.join("mixed.csv");
    std::fs::write(&manifest, out_lines.join("\n") + "\n").unwrap();

    let export = dir.path().join("dfb");
    let o = run(&["manifest", "export", manifest.to_str().unwrap(), "--format", "deepfakebench", "--out", export.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("1 faces left out") && err.contains("1 unlabelled rows left out"), "{err}");
    assert!(err.contains("lmdb: false") && err.contains("ln -s"), "{err}");
    let label_dict = dir.path().join("label_dict.yaml");
    std::fs::write(&label_dict, &o.stdout).unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("scmpl-fixture_Fake: 1"));
    for name in ["DFDC", "FaceForensics++", "Celeb-DF-v2", "scmpl-fixture"] {
        assert!(export.join(format!("dataset_json/{name}.json")).is_file(), "one file per dataset: {name}");
    }

    let python = ["./.venv/bin/python", "python3"]
        .into_iter()
        .find(|p| std::process::Command::new(p).args(["-c", "import yaml"]).current_dir(env!("CARGO_MANIFEST_DIR")).status().is_ok_and(|s| s.success()))
        .expect("a python3 with PyYAML (scripts/setup installs it into .venv)");
    let o = std::process::Command::new(python)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("scripts/check-deepfakebench.py")
        .args([export.as_os_str(), "datasets/scmpl".as_ref(), label_dict.as_os_str()])
        .output()
        .unwrap();
    assert!(o.status.success(), "DeepfakeBench's loader: {}", String::from_utf8_lossy(&o.stderr));
    let loaded: BTreeMap<String, usize> = serde_json::from_slice(&o.stdout).unwrap();

    // Expected: labelled rows of the train and test splits, one per frame.
    let names = |ds: &str| match ds {
        "dfdc" => "DFDC".to_string(),
        "ffpp" => "FaceForensics++".to_string(),
        "celebdf" => "Celeb-DF-v2".to_string(),
        other => format!("scmpl-{other}"),
    };
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for r in named_rows(&manifest) {
        if r["label"].is_empty() || r["face"] != "0" || !["train", "test"].contains(&r["split"].as_str()) {
            continue;
        }
        *expected.entry(format!("{}|{}|{}", names(&r["dataset"]), r["split"], r["label"])).or_default() += 1;
    }
    assert_eq!(loaded, expected);
    assert!(loaded.values().sum::<usize>() > 100);
}
