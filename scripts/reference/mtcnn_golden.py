"""Golden MTCNN detections from facenet-pytorch 2.6.0, for scmpl's parity test.

Runs facenet-pytorch's MTCNN (default parameters: min_face_size 20, thresholds 0.6/0.7/0.7,
factor 0.709) on the real test media and writes one CSV row per face:
source, frame, x1, y1, x2, y2, score, lm0..lm9 (x, y of eyes, nose, mouth corners).
Video frames are decoded by the ffmpeg command line to RGB with the bilinear scaler, as scmpl's
decoder does. Run in the reference venv (scripts/reference/setup), from the repository root:
    ~/.cache/scmpl/reference-venv/bin/python scripts/reference/mtcnn_golden.py > tests/golden/mtcnn.csv
"""

import subprocess
import sys

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

MEDIA = "tests/media"
IMAGES = ["astronaut.png", "camera.png", "coffee.png", "rocket.jpg"]
VIDEOS = ["carphone_pristine.mp4"]


def frames(path):
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", path], check=True, capture_output=True, text=True).stdout.strip()
    w, h = map(int, probe.split(","))
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-sws_flags", "bilinear", "-"],
        check=True, capture_output=True).stdout
    n = len(raw) // (w * h * 3)
    return np.frombuffer(raw, np.uint8).reshape(n, h, w, 3)


def rows(mtcnn, source, index, img):
    boxes, probs, points = mtcnn.detect(img, landmarks=True)
    if boxes is None:
        return
    for b, p, lm in zip(boxes, probs, points):
        yield [source, index, *b.tolist(), float(p), *lm.reshape(-1).tolist()]


def main():
    torch.set_num_threads(2)
    mtcnn = MTCNN(keep_all=True, select_largest=False, device="cpu")
    out = sys.stdout
    out.write("source,frame,x1,y1,x2,y2,score," + ",".join(f"lm{i}" for i in range(10)) + "\n")
    for name in IMAGES:
        img = np.asarray(Image.open(f"{MEDIA}/{name}").convert("RGB"))
        for r in rows(mtcnn, name, 0, img):
            out.write(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + "\n")
    for name in VIDEOS:
        for i, frame in enumerate(frames(f"{MEDIA}/{name}")):
            for r in rows(mtcnn, name, i, frame.copy()):
                out.write(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + "\n")


if __name__ == "__main__":
    main()
