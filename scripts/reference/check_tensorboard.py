"""Reads a scmpl run's TensorBoard events with the tensorboard package's own reader and checks
them against the run's metrics.csv: every loss at its step, and eval/accuracy.

    python check_tensorboard.py RUN      (in the reference venv; prints what it read)
"""
import csv
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    run = sys.argv[1]
    acc = EventAccumulator(f"{run}/tb")
    acc.Reload()
    tags = acc.Tags()["scalars"]
    print("tags:", sorted(tags))
    losses = {}
    for tag in tags:
        if tag.endswith("/loss"):
            for e in acc.Scalars(tag):
                losses[e.step] = e.value
    rows = list(csv.DictReader(open(f"{run}/metrics.csv")))
    for r in rows:
        if r.get("loss"):
            step, want = int(r["step"]), float(r["loss"])
            assert abs(losses[step] - want) < 1e-4, (step, losses.get(step), want)
    assert "eval/accuracy" in tags, tags
    print(f"ok: {len(rows)} rows of metrics.csv match; eval/accuracy = {acc.Scalars('eval/accuracy')[-1].value}")


if __name__ == "__main__":
    main()
