"""One training run: data, train, evaluate, export, parity, gate, publish."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from torch import nn

from modelship_api.profile import PROFILE_FILE, rfc3339
from modelship_api.training_result import TrainingResult
from modelship_api.trainingrun import (
    LINEAGE_DATA_TIME,
    LINEAGE_FILE,
    Artifact,
    Lineage,
    ProductionData,
    TrainingRunSpec,
)
from modelship_trainer import slices as gate_slices
from modelship_trainer import triton_config
from modelship_trainer.data import ArrayDataset, FloatArray, concat, load_directory, split
from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.evaluate import classification_metrics
from modelship_trainer.export import (
    build_tensorrt,
    check_parity,
    export_onnx,
    onnx_logits,
    onnx_session,
    tensorrt_unavailable,
)
from modelship_trainer.gate import Production, decide
from modelship_trainer.hyperparameters import as_strings, parse_hyperparameters
from modelship_trainer.lineage import code_version, file_digest
from modelship_trainer.production import ProductionSamples
from modelship_trainer.production import load as load_production_area
from modelship_trainer.profiling import build_profile, dataset_time
from modelship_trainer.recipe import Recipe
from modelship_trainer.registry import load_recipe
from modelship_trainer.repository import production_model, publish, published_versions
from modelship_trainer.training import predict_logits

STAGES = ("generate", "train", "evaluate", "export", "parity", "profile", "gate", "publish")
RUNNER_SOURCE = Path(__file__).with_name("triton_runner.py")


@dataclass
class RunConfig:
    """The spec plus where the pod mounted the model repository and the data volumes."""

    spec: TrainingRunSpec
    repository: Path
    dataset_dir: Path | None = None
    production_dir: Path | None = None  # holds production/<model>/ (dataset.production)


@dataclass
class RunOutput:
    """The result, plus the trained model and the evaluation set (original held-out split,
    then the reviewed held-out production samples) for callers that compare."""

    result: TrainingResult
    model: nn.Module
    held_out: ArrayDataset


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)
    on_stage: Callable[[str, float], None] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
            if self.on_stage:
                self.on_stage(name, self.seconds[name])


def load_data(recipe: Recipe, config: RunConfig) -> tuple[ArrayDataset, datetime]:
    """The data and its time (the profile's dataTime, for staleness): when it was generated,
    or when the dataset directory's arrays were last written."""
    ds = config.spec.dataset
    if ds.generated is not None:
        return recipe.generate(ds.generated), datetime.now(UTC)
    if ds.volume is not None:
        if config.dataset_dir is None:
            raise InvalidSpecError("dataset.volume is set but no dataset directory was given")
        data = load_directory(config.dataset_dir)
        return data, dataset_time([config.dataset_dir / "images.npy",
                                   config.dataset_dir / "labels.npy"])
    raise InvalidSpecError("dataset: set exactly one of generated or volume")


def load_production(recipe: Recipe, config: RunConfig,
                    data: ArrayDataset) -> ProductionSamples | None:
    production = config.spec.dataset.production
    if production is None:
        return None
    if config.production_dir is None:
        raise InvalidSpecError("dataset.production is set but no production directory was "
                               "given (--production-dir)")
    return load_production_area(production, config.production_dir, config.spec.model,
                                data.classes, data.sample_shape, recipe.supports_weights)


MIN_REFERENCE = 100  # fewer production samples make too coarse a drift reference


def reference_data(spec: ProductionData | None, reviewed: ProductionSamples | None,
                   held_out: ArrayDataset) -> tuple[FloatArray, FloatArray | None, str]:
    """What profile.json is computed on (images, weights) and a sentence saying so. With
    production data and reference Production: the newest production samples not trained on,
    which is what the version will serve (a version retrained after drift must be judged
    against the new normal, not against a mix that still holds the old data); too few of
    them, or reference HeldOut: the held-out split."""
    if spec is None or reviewed is None:
        return held_out.images, None, ""
    ref = reviewed.reference
    since = f" served since {spec.reference_since}" if spec.reference_since else ""
    if spec.reference == "HeldOut":
        return held_out.images, None, f"the held-out split ({len(held_out)} samples)"
    if len(ref.images) < MIN_REFERENCE:
        return held_out.images, None, (
            f"the held-out split ({len(held_out)} samples): only {len(ref.images)} production "
            f"samples not trained on{since}, fewer than {MIN_REFERENCE}")
    oldest = f", the oldest from {ref.oldest.isoformat()}" if ref.oldest else ""
    return ref.images, ref.weights, (
        f"{len(ref.images)} production samples not trained on{since}{oldest}, "
        "weighted 1/probability")


def _production_summary(p: ProductionSamples | None) -> str:
    if p is None:
        return ""
    u = p.used
    return (f"; production samples: {u.train} trained on, {u.held_out} held out from "
            f"{u.parts} parts ({u.corrupt_parts} corrupt parts, {u.bad_label_lines} bad label "
            f"lines and {u.excluded_labels} unclear, unresolved or unknown labels skipped)"
            + (f"; drift reference: {u.reference}" if u.reference else ""))


def run(config: RunConfig, on_stage: Callable[[str, float], None] | None = None) -> RunOutput:
    """The run's outcome; raises TrainerError (or anything else) when it fails."""
    spec = config.spec
    timings = Timings(on_stage=on_stage)
    recipe = load_recipe(spec.trainer.recipe)
    hp = parse_hyperparameters(spec.trainer.hyperparameters, recipe.hyperparameters)
    if spec.publish.backend == "tensorrt":
        # Refuse before training when the chosen backend cannot have its plan.
        why = ("export.tensorrt is Never" if spec.export.tensorrt == "Never"
               else tensorrt_unavailable())
        if why:
            raise InvalidSpecError(f"publish.backend tensorrt needs a TensorRT plan ({why})")

    slice_specs = (spec.gate.slices if spec.gate else None) or []
    with timings.stage("generate"):
        data, data_time = load_data(recipe, config)
        seed = spec.dataset.generated.seed if spec.dataset.generated else 0
        train, held_out = split(data, spec.dataset.validation_fraction, seed)
        definitions = recipe.statistics(data.sample_shape, data.classes)
        gate_slices.check(slice_specs, data.classes, definitions,
                          spec.dataset.production is not None)
        reviewed = load_production(recipe, config, data)
        if reviewed is not None:
            # Reviewed held-out samples join the evaluation set only: never trained on.
            train = concat(train, reviewed.train)
            held_out = concat(held_out, reviewed.held_out)
            if reviewed.newest is not None and reviewed.newest > data_time:
                data_time = reviewed.newest  # staleness counts from the newest data
        is_reviewed = np.arange(len(held_out)) >= len(held_out) - (
            len(reviewed.held_out) if reviewed else 0)
        slice_masks = gate_slices.masks(slice_specs, held_out, is_reviewed, definitions)
    with timings.stage("train"):
        model = recipe.build_model(data.sample_shape, len(data.classes), hp)
        recipe.fit(model, train, hp)
    with timings.stage("evaluate"):
        logits = predict_logits(model, held_out.images)
        metrics = classification_metrics(logits, held_out.labels, len(data.classes))
        slice_metrics = gate_slices.evaluate(slice_masks, logits, held_out)

    model_dir = config.repository / spec.model
    with tempfile.TemporaryDirectory(prefix="modelship-export-") as tmp:
        work = Path(tmp)
        onnx_path, plan_path = work / "model.onnx", work / "model.plan"
        with timings.stage("export"):
            export_onnx(model, data.sample_shape, onnx_path, spec.export.onnx_opset)
            trt = build_tensorrt(onnx_path, plan_path, data.sample_shape,
                                 spec.publish.max_batch_size, spec.export.tensorrt)
        with timings.stage("parity"):
            parity = check_parity(model, onnx_path, held_out.images,
                                  spec.export.parity_tolerance)
        with timings.stage("profile"):
            # On onnxruntime's outputs, the numbers serving will see.
            images, weights, reference = reference_data(spec.dataset.production, reviewed,
                                                        held_out)
            if reviewed is not None:
                reviewed.used.reference = reference
            profile = build_profile(definitions, images,
                                    onnx_logits(onnx_session(onnx_path), images), data_time,
                                    weights=weights)
        with timings.stage("gate"):
            production = None
            baseline = spec.gate.baseline if spec.gate else None
            if baseline is not None or any(s.max_regression is not None for s in slice_specs):
                found = production_model(model_dir,
                                         baseline.production_version if baseline else None)
                if found is not None:
                    version, prod_path = found
                    prod_logits = onnx_logits(onnx_session(prod_path), held_out.images)
                    production = Production(version, classification_metrics(
                        prod_logits, held_out.labels, len(data.classes)),
                        gate_slices.evaluate(slice_masks, prod_logits, held_out))
            gate = decide(spec.gate, metrics, production, slice_metrics)
        parent = production.version if production else (
            published_versions(model_dir)[-1] if published_versions(model_dir) else None)
        lineage = Lineage(dataset_digest=data.digest(), code_version=code_version(),
                          hyperparameters=as_strings(hp), parent_version=parent,
                          production=reviewed.used if reviewed else None)
        key = baseline.metric if baseline else "accuracy"
        result = TrainingResult(
            outcome="Rejected", reason="GateRejected",
            message=gate.reason + _production_summary(reviewed), model=spec.model,
            key_metric=f"{key}={metrics[key]:.4f}" if key in metrics else None,
            metrics=metrics, gate=gate, lineage=lineage, onnx_opset=spec.export.onnx_opset,
            parity_max_abs_diff=parity, timings=timings.seconds,
        )
        if gate.verdict == "Rejected":
            return RunOutput(result, model, held_out)
        config_text = triton_config.render(spec.model, spec.publish.backend,
                                           spec.publish.max_batch_size, data.sample_shape,
                                           len(data.classes))

        def fill(version_dir: Path) -> None:
            shutil.copyfile(onnx_path, version_dir / "model.onnx")
            if trt.built:
                shutil.copyfile(plan_path, version_dir / "model.plan")
            if spec.publish.backend == "python":
                shutil.copyfile(RUNNER_SOURCE, version_dir / "model.py")
            (version_dir / "config.pbtxt").write_text(config_text)
            profile.dump(version_dir / PROFILE_FILE)
            report = {
                "heldOut": metrics, "samples": {"train": len(train), "heldOut": len(held_out)},
                "classes": list(data.classes), "parityMaxAbsDiff": parity,
                "onnxOpset": spec.export.onnx_opset, "tensorrt": trt.detail,
                "production": {"version": production.version,
                               "heldOut": dict(production.metrics),
                               "slices": _slice_report(production.slices)}
                if production else None,
                "slices": _slice_report(slice_metrics),
                "productionData": reviewed.used.to_api() if reviewed else None,
                "gate": gate.to_api(),
            }
            (version_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
            # The data time here too: a version whose profile.json does not reach the
            # operator (too large) is still dated by its data, not its publish time.
            record = {**lineage.to_api(), "recipe": recipe.name,
                      "dataset": spec.dataset.to_api(), "classes": list(data.classes),
                      LINEAGE_DATA_TIME: rfc3339(data_time)}
            (version_dir / LINEAGE_FILE).write_text(json.dumps(record, indent=2) + "\n")

        with timings.stage("publish"):
            published = publish(config.repository, spec.model, fill, model_config=config_text)
        formats = ["onnx", "tensorrt"] if trt.built else ["onnx"]
        result.outcome, result.reason, result.version = "Succeeded", "Published", published.version
        result.message = (f"published {spec.model} version {published.version}: {gate.reason}"
                          + _production_summary(reviewed))
        result.artifact = Artifact(digest=file_digest(published.path / "model.onnx"),
                                   path=f"{spec.model}/{published.version}", formats=formats,
                                   tensorrt=trt.detail)
        result.timings = timings.seconds
        result.profile = profile.summary()
        return RunOutput(result, model, held_out)


def _slice_report(found: Mapping[str, gate_slices.SliceMetrics]) -> dict[str, object]:
    return {name: {"samples": m.samples, **m.metrics} for name, m in found.items()}
