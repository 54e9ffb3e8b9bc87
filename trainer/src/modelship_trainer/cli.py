"""`modelship-train`: the command a TrainingRun's Job runs.

The spec comes from --spec (a JSON file, '-' for stdin) or $MODELSHIP_TRAINING_SPEC (JSON of
a TrainingRunSpec, or a whole TrainingRun); flags override single fields, so the command also
works by hand. Whatever happens, the result is written to the termination message file and
printed as the last line on stdout. Exit codes: 0 published, 3 rejected by the gate,
2 invalid spec, 1 any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import pydantic

from modelship_api.training_result import (
    DEFAULT_PROGRESS_MARKER,
    ENV_DATASET_DIR,
    ENV_PRODUCTION_DIR,
    ENV_PROGRESS_MARKER,
    ENV_REPOSITORY,
    ENV_TERMINATION_LOG,
    ENV_TRAINING_SPEC,
    EXIT_FAILED,
    EXIT_INVALID_SPEC,
    EXIT_REJECTED,
    EXIT_SUCCEEDED,
    TERMINATION_MESSAGE_PATH,
    TrainingResult,
)
from modelship_api.trainingrun import TrainingRunSpec
from modelship_trainer.errors import InvalidSpecError, TerminatedError, TrainerError

_GENERATED_KEYS = {"seed": "seed", "samples": "samples", "image_size": "imageSize",
                   "brightness": "brightness", "noise": "noise", "defect_rate": "defectRate"}


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidSpecError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def report_stage(name: str, seconds: float) -> None:
    """Log each finished stage; once training is done, leave the marker the pod's readiness
    probe looks for, so the operator can show the run as Evaluating."""
    print(f"modelship-train: {name} {seconds:.2f}s", file=sys.stderr, flush=True)
    if name == "train":
        marker = Path(os.environ.get(ENV_PROGRESS_MARKER, DEFAULT_PROGRESS_MARKER))
        with contextlib.suppress(OSError):  # progress is informative; never fail a run on it
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelship-train", description=__doc__.split("\n")[0])
    p.add_argument("--spec", help="TrainingRunSpec JSON file ('-' = stdin); "
                   f"default ${ENV_TRAINING_SPEC}")
    p.add_argument("--repository", default=os.environ.get(ENV_REPOSITORY),
                   help=f"model repository directory (${ENV_REPOSITORY})")
    p.add_argument("--dataset-dir", default=os.environ.get(ENV_DATASET_DIR),
                   help=f"dataset directory for dataset.volume (${ENV_DATASET_DIR})")
    p.add_argument("--production-dir", default=os.environ.get(ENV_PRODUCTION_DIR),
                   help="folder holding production/<model>/ for dataset.production "
                   f"(${ENV_PRODUCTION_DIR})")
    p.add_argument("--termination-log",
                   default=os.environ.get(ENV_TERMINATION_LOG, TERMINATION_MESSAGE_PATH),
                   help=f"where the result goes (${ENV_TERMINATION_LOG})")
    p.add_argument("--model", help="override spec.model")
    p.add_argument("--recipe", help="override spec.trainer.recipe")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter (repeatable)")
    p.add_argument("--generated", action="append", default=[], metavar="KEY=VALUE",
                   help=f"generated dataset knob: {', '.join(_GENERATED_KEYS)} (repeatable)")
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt", "python"])
    p.add_argument("--opset", type=int, help="override spec.export.onnxOpset")
    p.add_argument("--tensorrt", choices=["Auto", "Always", "Never"])
    p.add_argument("--threads", type=int, default=int(os.environ.get(
        "MODELSHIP_THREADS", len(os.sched_getaffinity(0)))), help="CPU threads for torch")
    return p


def build_spec(args: argparse.Namespace) -> TrainingRunSpec:
    raw: dict[str, Any] = {}
    text = None
    if args.spec:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
    elif os.environ.get(ENV_TRAINING_SPEC):
        text = os.environ[ENV_TRAINING_SPEC]
    if text:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpecError(f"spec is not JSON: {exc}") from exc
        if isinstance(raw, dict) and isinstance(raw.get("spec"), dict):
            raw = raw["spec"]  # a whole TrainingRun object
    raw.setdefault("publish", {}).setdefault("repository", {})
    if args.model:
        raw["model"] = args.model
    trainer = raw.setdefault("trainer", {})
    if args.recipe:
        trainer["recipe"] = args.recipe
    if args.hp:
        trainer["hyperparameters"] = {**(trainer.get("hyperparameters") or {}),
                                      **_pairs(args.hp, "--hp")}
    dataset = raw.setdefault("dataset", {})
    if args.generated or not (dataset.get("generated") or dataset.get("volume")):
        knobs = _pairs(args.generated, "--generated")
        unknown = sorted(set(knobs) - set(_GENERATED_KEYS))
        if unknown:
            raise InvalidSpecError(f"--generated: unknown knob {unknown[0]!r}")
        generated = dataset.setdefault("generated", {})
        generated.update({_GENERATED_KEYS[k]: v for k, v in knobs.items()})
    if args.backend:
        raw["publish"]["backend"] = args.backend
    if args.opset is not None:
        raw.setdefault("export", {})["onnxOpset"] = args.opset
    if args.tensorrt:
        raw.setdefault("export", {})["tensorrt"] = args.tensorrt
    try:
        return TrainingRunSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InvalidSpecError(
            f"spec.{where}: {first['msg']} ({exc.error_count()} error(s))") from exc


def write_result(result: TrainingResult, path: str) -> None:
    text = result.to_termination_message()
    try:
        Path(path).write_text(text)
    except OSError as exc:  # outside a pod /dev/termination-log does not exist
        print(f"modelship-train: cannot write {path}: {exc}", file=sys.stderr)
    print(text, flush=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise TerminatedError("received SIGTERM (deadline or pod deletion)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    model = args.model or ""
    try:
        spec = build_spec(args)
        model = spec.model
        if not args.repository:
            raise InvalidSpecError(
                f"no model repository: pass --repository or set ${ENV_REPOSITORY}")
        import torch  # deferred: argument errors are reported without loading torch

        from modelship_trainer.pipeline import RunConfig, run

        torch.set_num_threads(max(1, args.threads))
        config = RunConfig(spec, Path(args.repository),
                           Path(args.dataset_dir) if args.dataset_dir else None,
                           Path(args.production_dir) if args.production_dir else None)
        result = run(config, on_stage=report_stage).result
    except TrainerError as exc:
        result = TrainingResult(outcome="Failed", reason=exc.reason, message=str(exc),
                                model=model)
    except Exception as exc:  # anything unexpected still ends as a readable Failed result
        traceback.print_exc()
        result = TrainingResult(outcome="Failed", reason="TrainingFailed",
                                message=f"{type(exc).__name__}: {exc}", model=model)
    write_result(result, args.termination_log)
    if result.outcome == "Succeeded":
        return EXIT_SUCCEEDED
    if result.outcome == "Rejected":
        return EXIT_REJECTED
    return EXIT_INVALID_SPEC if result.reason == InvalidSpecError.reason else EXIT_FAILED
