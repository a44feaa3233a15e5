#!/usr/bin/env python3
"""Loads a `scmpl manifest export --format deepfakebench` output the way DeepfakeBench does
(training/dataset/abstract_dataset.py: collect_img_and_label_for_one_dataset, load_rgb; the
label_dict of training/config/train_config.yaml plus the lines scmpl printed), from a folder
laid out like DeepfakeBench's root, and prints the frames found per (dataset, mode, label) as
JSON. Fails on the first thing DeepfakeBench would fail on.

  check-deepfakebench.py EXPORT_DIR ROOT_PREFIX LABEL_DICT_LINES_FILE [COMPRESSION]
"""
import json, os, sys, tempfile

import yaml

# DeepfakeBench's label_dict (training/config/train_config.yaml), as shipped.
LABEL_DICT = """
DFD_fake: 1
DFD_real: 0
FF-SH: 1
FF-F2F: 1
FF-DF: 1
FF-FS: 1
FF-NT: 1
FF-FH: 1
FF-real: 0
CelebDFv1_real: 0
CelebDFv1_fake: 1
CelebDFv2_real: 0
CelebDFv2_fake: 1
DFDCP_Real: 0
DFDCP_FakeA: 1
DFDCP_FakeB: 1
DFDC_Fake: 1
DFDC_Real: 0
DF_fake: 1
DF_real: 0
UADFV_Fake: 1
UADFV_Real: 0
roop_Real: 0
roop_Fake: 1
"""
FF_POOL = ['FF-DF', 'FF-F2F', 'FF-FS', 'FF-NT', 'FaceForensics++', 'DeepFakeDetection', 'FaceShifter']
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"

export, prefix, extra = sys.argv[1], sys.argv[2], sys.argv[3]
compression = sys.argv[4] if len(sys.argv) > 4 else "c23"
# The printed lines pasted under label_dict, as README says.
config_yaml = "label_dict:\n" + "".join(f"  {l}\n" for l in LABEL_DICT.strip().splitlines()) + open(extra).read()
label_dict = yaml.safe_load(config_yaml)["label_dict"]
json_folder = os.path.join(os.path.abspath(export), "dataset_json")
counts = {}
with tempfile.TemporaryDirectory() as root:
    # DeepfakeBench runs from its own folder, with the export's rgb/ linked at ROOT_PREFIX.
    link = os.path.join(root, prefix)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.abspath(os.path.join(export, "rgb")), link)
    os.chdir(root)
    config = {"rgb_dir": "./datasets/rgb", "lmdb": False, "dataset_json_folder": json_folder, "label_dict": label_dict}
    for name in sorted(f[:-5] for f in os.listdir(json_folder) if f.endswith(".json")):
        with open(os.path.join(config["dataset_json_folder"], name + ".json")) as f:
            dataset_info = json.load(f)
        for label in dataset_info[name]:
            for mode in ("train", "test"):  # DeepfakeBench reads both for every class
                sub = dataset_info[name][label][mode]
                if name in FF_POOL:
                    sub = sub[compression]
                for video_name, video_info in sub.items():
                    if video_info["label"] not in config["label_dict"]:
                        raise ValueError(f"Label {video_info['label']} is not found in the configuration file.")
                    lab = config["label_dict"][video_info["label"]]
                    frame_paths = video_info["frames"]
                    if "\\" in frame_paths[0]:
                        frame_paths = sorted(frame_paths, key=lambda x: int(x.split("\\")[-1].split(".")[0]))
                    else:
                        frame_paths = sorted(frame_paths, key=lambda x: int(x.split("/")[-1].split(".")[0]))
                    for file_path in frame_paths:
                        if not file_path[0] == ".":  # load_rgb
                            file_path = f'./{config["rgb_dir"]}\\' + file_path
                        assert os.path.exists(file_path), f"{file_path} does not exist"
                        with open(file_path, "rb") as img:
                            head = img.read(8)
                        assert head.startswith(PNG) or head.startswith(JPEG), f"{file_path} is not an image"
                        # mask-free detectors only: there is no masks/ or landmarks/ beside frames/
                        assert "/frames/" in file_path
                        key = f"{name}|{mode}|{lab}"
                        counts[key] = counts.get(key, 0) + 1
print(json.dumps(counts, sort_keys=True))
