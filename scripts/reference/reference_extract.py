"""The reference preprocessing, for speed baselines (scripts/bench-reference): facenet-pytorch's
MTCNN (thresholds 0.85/0.95/0.95, the authors' settings) on every frame at half resolution,
boxes scaled back x2, square crops of the box's long side (no margin), PNG via cv2.

    python reference_extract.py OUT VIDEO...      (writes OUT/detections.csv and OUT/faces/)
"""
import csv
import os
import sys

import cv2
import torch
from facenet_pytorch import MTCNN
from PIL import Image

BATCH = 32


def square_crop(frame, box):
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    bw, bh = x2 - x1, y2 - y1
    if bw > bh:
        y1 -= (bw - bh) // 2
        y2 = y1 + bw
    else:
        x1 -= (bh - bw) // 2
        x2 = x1 + bh
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    return frame[y1:y2, x1:x2]


def main():
    out, videos = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(os.cpu_count())
    detector = MTCNN(margin=0, thresholds=[0.85, 0.95, 0.95], device="cpu", keep_all=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "detections.csv"), "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["video_id", "frame", "x1", "y1", "x2", "y2", "score"])
        for path in videos:
            vid = os.path.splitext(os.path.basename(path))[0]
            os.makedirs(os.path.join(out, "faces", vid), exist_ok=True)
            cap = cv2.VideoCapture(path)
            index = 0
            while True:
                frames, small = [], []
                while len(frames) < BATCH:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    frames.append(frame)
                    img = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    small.append(img.resize(size=[s // 2 for s in img.size]))
                if not frames:
                    break
                boxes, probs = detector.detect(small, landmarks=False)
                for frame, bs, ps in zip(frames, boxes, probs):
                    if bs is not None:
                        for k, (b, p) in enumerate(zip(bs, ps)):
                            b = [v * 2 for v in b]
                            rows.writerow([vid, index, *(f"{v:.2f}" for v in b), f"{p:.4f}"])
                            crop = square_crop(frame, b)
                            if crop.size:
                                cv2.imwrite(os.path.join(out, "faces", vid, f"{index:06}_{k}.png"), crop)
                    index += 1
            cap.release()


if __name__ == "__main__":
    main()
