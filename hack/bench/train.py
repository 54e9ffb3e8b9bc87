"""Benchmark of one training run: seconds per stage and peak memory.

    .venv/bin/python hack/bench/train.py [--samples 4000] [--epochs 6] [--threads 2]

Runs the real pipeline (built-in surface-defects recipe, default dataset size) against a
throw-away model repository, with a second run gated against the first so the gate stage
evaluates a production model. Goal: the whole pipeline within 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

_START = time.perf_counter()

import torch  # noqa: E402  (timed: importing torch is part of a real run's cost)

from modelship_api.trainingrun import TrainingRunSpec  # noqa: E402
from modelship_trainer.pipeline import STAGES, RunConfig, run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    imported = time.perf_counter() - _START
    with tempfile.TemporaryDirectory(prefix="modelship-bench-") as tmp:
        repo = Path(tmp)
        results = []
        for gate in (None, {"baseline": {"maxRegression": 1.0}}):
            spec = TrainingRunSpec.model_validate({
                "model": "bench", "dataset": {"generated": {"samples": args.samples}},
                "trainer": {"hyperparameters": {"epochs": str(args.epochs)}},
                "gate": gate, "publish": {"repository": {}, "backend": "python"}})
            start = time.perf_counter()
            out = run(RunConfig(spec, repo))
            results.append((out, time.perf_counter() - start))
    print(f"threads={args.threads} samples={args.samples} epochs={args.epochs} "
          f"import torch+trainer={imported:.2f}s")
    for label, (out, total) in zip(("first run", "gated run"), results, strict=True):
        r = out.result
        timings = r.timings or {}
        print(f"{label}: outcome={r.outcome} version={r.version} {r.key_metric} "
              f"parity_max_abs_diff={r.parity_max_abs_diff:.2e} opset={r.onnx_opset}")
        for stage in STAGES:
            print(f"  {stage:<9} {timings.get(stage, 0.0):7.2f} s")
        print(f"  {'total':<9} {total:7.2f} s")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak RSS {peak_kib / 1024:.0f} MiB")
    return 0 if all(o.result.outcome == "Succeeded" for o, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
