"""A plain Python RetinaFace script doing scmpl's job with the same libraries, as a speed and
accuracy baseline (scripts/bench-reference): cv2 decode, every frame letterboxed into 640x640,
batches of 8 through ONNX Runtime (RetinaFace-mnet0.25, the same ONNX file as scmpl's), score
0.8, NMS 0.4, square crops of the box's long side, PNG via cv2.

    python retinaface_peer.py MODEL OUT VIDEO...     (writes OUT/detections.csv and OUT/faces/)
"""
import csv
import os
import sys

import cv2
import numpy as np
import onnxruntime as ort

from reference_extract import square_crop

SIZE, BATCH, SCORE, NMS = 640, 8, 0.8, 0.4
MEAN = np.array([104, 117, 123], np.float32)


def priors(size):
    out = []
    for step, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
        n = -(-size // step)
        for i in range(n):
            for j in range(n):
                for s in sizes:
                    out.append(((j + 0.5) * step, (i + 0.5) * step, s, s))
    return np.array(out, np.float32)


def nms(boxes, scores, thr):
    order = scores.argsort()[::-1]
    keep = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= thr]
    return keep


def main():
    model, out, videos = sys.argv[1], sys.argv[2], sys.argv[3:]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    anchors = priors(SIZE)
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
                frames = []
                while len(frames) < BATCH:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    frames.append(frame)
                if not frames:
                    break
                batch = np.zeros((len(frames), SIZE, SIZE, 3), np.float32)
                scales = []
                for b, frame in enumerate(frames):
                    h, w = frame.shape[:2]
                    k = min(SIZE / w, SIZE / h)
                    small = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
                    batch[b, : small.shape[0], : small.shape[1]] = small - MEAN
                    batch[b, small.shape[0]:, :] = 0
                    batch[b, :, small.shape[1]:] = 0
                    scales.append(k)
                loc, conf, _ = session.run(None, {"input": batch.transpose(0, 3, 1, 2).copy()})
                for b, frame in enumerate(frames):
                    score = conf[b, :, 1]
                    sel = score >= SCORE
                    a, d = anchors[sel], loc[b][sel]
                    cxcy = a[:, :2] + d[:, :2] * 0.1 * a[:, 2:]
                    wh = a[:, 2:] * np.exp(d[:, 2:] * 0.2)
                    boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1) / scales[b]
                    h, w = frame.shape[:2]
                    boxes = np.clip(boxes, 0, [w, h, w, h])
                    s = score[sel]
                    for k, i in enumerate(nms(boxes, s, NMS)):
                        box = boxes[i]
                        rows.writerow([vid, index, *(f"{v:.2f}" for v in box), f"{s[i]:.4f}"])
                        crop = square_crop(frame, box)
                        if crop.size:
                            cv2.imwrite(os.path.join(out, "faces", vid, f"{index:06}_{k}.png"), crop)
                    index += 1
            cap.release()


if __name__ == "__main__":
    main()
