"""What `modelship review` costs on a large production area: the first read, a page load and
a /metrics scrape while nothing changes (served from the cached snapshot after a few stat
calls), a label posted as a click does (appended, the label files read again, the queue and
progress recomputed), the scrape right after it, and one sample's PNG. Through the real HTTP
server on loopback.

    .venv/bin/python hack/bench/review.py [--samples 20000] [--labels 10000] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from modelship.review.server import Review, Settings, make_server
from modelship.review.store import Area
from modelship_api import samples as s

PART = 100  # samples per part: one flush of a runner


def build(volume: Path, count: int, labels: int) -> list[str]:
    area = s.production_area(volume, "bench")
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    ids: list[str] = []
    for p in range(0, count, PART):
        n = min(PART, count - p)
        t = t0 + timedelta(seconds=30 * p // PART)
        hour, part = s.hour_folder(t), s.part_name(1 + p * 2 // count, t, "pod-a")
        folder = area / s.SAMPLES_FOLDER / hour / part
        folder.mkdir(parents=True)
        np.save(folder / s.IMAGES_FILE, rng.uniform(0, 1, (n, 1, 32, 32)).astype(np.float32))
        lines = []
        for i in range(n):
            sid = s.sample_id(hour, part, i)
            ids.append(sid)
            lines.append(s.SampleRecord(
                id=sid, version=1 + p * 2 // count, time=t.isoformat(),
                prediction=int(rng.integers(3)), confidence=float(rng.uniform(0.34, 1)),
                probability=0.01).model_dump_json(by_alias=True))
        (folder / s.RECORDS_FILE).write_text("\n".join(lines) + "\n")
    for i in range(labels):
        s.append_label(area, s.LabelRecord(
            sample=ids[i % count], label=int(rng.integers(3)), reviewer=f"r{i % 2}",
            at=t0.isoformat(), label_set="default"))
    return ids


def timed(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        r.read()
    return (time.perf_counter() - start) * 1000


def post(url: str, sample: str) -> float:
    body = json.dumps({"sample": sample, "label": 0}).encode()
    request = urllib.request.Request(url + "/api/labels", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as r:
        r.read()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--labels", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ids = build(Path(tmp), args.samples, args.labels)
        area = Area(s.production_area(Path(tmp), "bench"), "default", 200)
        review = Review(area, Settings("bench", "bench", 0.6, ["a", "b", "c"], None))
        server = make_server(review, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            print(f"{args.samples} samples in {args.samples // PART} parts, "
                  f"{args.labels} labels by 2 reviewers")
            first = timed(url + "/api/state")
            print(f"first /api/state (reads every part and label): {first:.0f} ms")
            rows: dict[str, list[float]] = {}
            for i in range(args.runs):
                rows.setdefault("idle /api/state", []).append(timed(url + "/api/state"))
                rows.setdefault("idle /metrics", []).append(timed(url + "/metrics"))
                rows.setdefault("POST /api/labels (a click: append, read labels again)",
                                []).append(post(url, ids[i]))
                rows.setdefault("/metrics after it", []).append(timed(url + "/metrics"))
                rows.setdefault("one sample's PNG", []).append(
                    timed(f"{url}/api/image?id={ids[-1 - i]}"))
            for name, values in rows.items():
                print(f"{name}: p50 {statistics.median(values):.1f} ms, "
                      f"max {max(values):.1f} ms ({len(values)} requests)")
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
