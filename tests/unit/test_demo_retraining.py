"""The demo's closing act, in its pure parts: the ModelDeployment it applies is a valid API
object that samples to the dataset volume and retrains from a template gated on the dark
slice; the review page is scraped through objects the stack's Prometheus selects; what the
timeline prints is read from the answers and statuses it is given."""

from __future__ import annotations

from pathlib import Path

from modelship_api.modeldeployment import ModelDeployment
from modelship_api.retraining import ANNOTATION_SCORES, ANNOTATION_TRIGGER
from modelship_dev import demo, demo_retraining, review_page
from modelship_dev.chart import ReviewReading
from modelship_dev.demo_watch import FOLLOW, MD, MODEL, scalar, vector_by_version
from modelship_dev.monitoring import SELECTOR
from modelship_dev.workload import model_deployment


def _deployment(tmp_path: Path) -> ModelDeployment:
    obj = model_deployment(MD, MODEL, tmp_path / "repo", follow=FOLLOW,
                           parent_ref={"name": "gw"}, prometheus_url="http://127.0.0.1:9",
                           rollout=demo.ROLLOUT,
                           monitoring=demo_retraining.monitoring(tmp_path / "datasets"))
    obj["spec"]["retraining"] = demo_retraining.retraining(tmp_path / "repo",
                                                           tmp_path / "datasets")
    return ModelDeployment.model_validate(obj)


def test_the_demos_deployment_samples_to_the_volume_and_retrains_on_it(
        tmp_path: Path) -> None:
    md = _deployment(tmp_path)
    mon = md.spec.monitoring
    assert mon is not None and mon.sampling.enabled
    assert mon.sampling.volume is not None
    assert mon.sampling.volume.host_path == str(tmp_path / "datasets")
    assert mon.sampling.volume.path == demo_retraining.PLANT
    retraining = md.spec.retraining
    assert retraining is not None and retraining.triggers.data_drift is not None
    assert retraining.triggers.data_drift.for_ == demo_retraining.TRIGGER_FOR
    template = retraining.template
    assert template.dataset.production is not None
    assert template.dataset.production.volume.host_path == str(tmp_path / "datasets")
    assert template.gate is not None and template.gate.baseline is not None
    # The gate compares with the version the demo's ModelDeployment serves.
    assert template.gate.baseline.model_deployment == MD
    assert template.model == md.spec.model.name
    slices = {s.name: s for s in template.gate.slices or []}
    assert slices["dark"].input_statistic is not None
    assert slices["dark"].input_statistic.max == 0.3
    assert slices["reviewed"].reviewed_production


def test_the_demos_drift_is_judged_with_the_default_thresholds(tmp_path: Path) -> None:
    mon = _deployment(tmp_path).spec.monitoring
    assert mon is not None
    assert mon.statistics is None  # all of them
    assert (mon.thresholds.psi.raise_above, mon.thresholds.js.raise_above) == (0.25, 0.2)


def test_the_review_page_is_scraped_through_a_monitor_the_stacks_prometheus_selects() -> None:
    service, slice_, monitor = review_page.manifests("ns", "10.251.0.1", 8123, "2s")
    assert monitor["metadata"]["labels"] == SELECTOR
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert "selector" not in service["spec"]  # no pod backs it
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == \
        service["metadata"]["name"]
    assert slice_["endpoints"][0]["addresses"] == ["10.251.0.1"]
    assert slice_["ports"][0]["port"] == 8123


def test_the_review_pages_address_is_read_from_its_first_line() -> None:
    line = "Review page: http://10.251.0.1:40123/ (model surface-defects, reviewer visitor)\n"
    assert review_page.page_url(line) == ("http://10.251.0.1:40123/", "10.251.0.1", 40123)
    assert review_page.page_url("") is None


def test_reviewed_accuracy_is_read_per_version_from_prometheus_answers() -> None:
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"version": "2"}, "value": [1.0, "0.455"]},
        {"metric": {"version": "4"}, "value": [1.0, "0.97"]},
        {"metric": {}, "value": [1.0, "1"]}]}}
    assert vector_by_version(answer) == {2: 0.455, 4: 0.97}
    assert vector_by_version({}) == {}
    assert scalar({"data": {"result": [{"metric": {}, "value": [1.0, "812"]}]}}) == 812.0
    assert scalar({"data": {"result": []}}) is None


def test_the_timeline_says_what_the_run_was_started_for_and_how_its_gate_judged() -> None:
    run = {"metadata": {"name": "defects-retrain-1", "annotations": {
        ANNOTATION_TRIGGER: "DataDrift",
        ANNOTATION_SCORES: "DataDrift since t: input_brightness psi=5.1"}}}
    text = demo_retraining.provenance(run)
    assert text.startswith("trigger DataDrift (DataDrift since t: input_brightness psi=5.1)")
    assert text.endswith("reviewed labels so far unknown")
    gate = {"checks": [
        {"name": "accuracy>=0.85", "passed": True, "value": 0.95},
        {"name": "accuracy vs production", "passed": True, "value": 0.95,
         "message": "accuracy 0.9500 vs production v2 0.6000"},
        {"name": "slice dark: accuracy>=0.8", "passed": True, "value": 0.931},
        {"name": "slice dark: accuracy vs v2", "passed": False, "value": 0.5,
         "message": "slice dark: accuracy 0.5000 vs production v2 0.6000"}]}
    assert demo_retraining.gate_lines(gate) == [
        "passed: accuracy>=0.85: 0.950",
        "passed: accuracy 0.9500 vs production v2 0.6000",
        "passed: slice dark: accuracy>=0.8: 0.931",
        "FAILED: slice dark: accuracy 0.5000 vs production v2 0.6000"]


def test_accuracy_and_cycle_figures() -> None:
    reading = ReviewReading(10.0, 500, {2: (0.4555, 200)})
    assert demo_retraining.accuracy_text(reading, 2) == "0.456 over 200 labels"
    assert demo_retraining.accuracy_text(reading, 4) == "none yet"
    assert demo_retraining.accuracy_text(None, 2) == "none yet"
    line = demo_retraining.cycle_line(100.0, 262.4, 4)
    assert line.startswith("cycle time: 162 s from the lights changing (100.0s) to the "
                           "retrained v4 at 100% (262.4s)")
