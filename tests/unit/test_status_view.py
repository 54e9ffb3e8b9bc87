"""`modelship status`: what a person sees."""

from __future__ import annotations

from modelship.core.status_view import render
from modelship_api.modeldeployment import ModelDeployment


def test_status_view_shows_weights_and_each_check() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision"},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}},
        "status": {
            "phase": "Progressing", "stableVersion": 1, "candidateVersion": 2,
            "weights": {"stable": 80, "candidate": 20},
            "rollout": {"strategy": "canary", "stage": "Canary", "step": 0},
            "analysis": {"consecutiveFailures": 1, "lastResult": "Failed", "checks": [
                {"name": "error-ratio", "result": "Failed", "value": 0.0734,
                 "threshold": "<= 0.01", "message": "above max"},
                {"name": "latency", "result": "Inconclusive", "threshold": "<= 1.5x stable",
                 "message": "no data"}]},
        },
    })
    text = render(md)
    assert "vision/defects" in text
    assert "stable 80% / candidate 20%" in text
    assert "error-ratio  Failed" in text and "0.0734" in text and "<= 0.01" in text
    assert "latency" in text and "Inconclusive" in text and "no data" in text
    assert "1 failed" in text


def test_status_view_shows_draining_versions_and_the_route_verdict() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision"},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}},
        "status": {
            "phase": "RolledBack", "stableVersion": 1,
            "draining": [{"version": 2, "since": "2026-01-01T10:00:00Z"}],
            "conditions": [{"type": "RouteAccepted", "status": "False",
                            "reason": "NoMatchingParent", "message": "no such listener",
                            "lastTransitionTime": "2026-01-01T10:00:00Z"}],
        },
    })
    text = render(md)
    assert "draining:   v2 off the route since 2026-01-01T10:00:00Z; waiting for the route" in text
    assert "RouteAccepted=False NoMatchingParent: no such listener" in text


def test_status_view_shows_the_pod_template_revision_next_to_the_version() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision"},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}},
        "status": {"phase": "Progressing", "stableVersion": 2, "stableTemplate": "aaaa111111",
                   "candidateVersion": 2, "candidateRevision": 1,
                   "candidateTemplate": "bbbb222222"},
    })
    text = render(md)
    assert "stable:     2 (template aaaa111111)" in text
    assert "candidate:  2 revision 1 (template bbbb222222)" in text


def test_status_view_shows_the_monitoring_block() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision"},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}},
        "status": {
            "phase": "Ready", "stableVersion": 2,
            "monitoring": {
                "version": 2, "evaluatedAt": "2026-12-02T12:00:00Z", "window": "1m",
                "modelAgeSeconds": 172800, "dataTime": "2026-11-30T12:00:00Z", "nonFinite": 0,
                "statistics": [
                    {"name": "input_brightness", "source": "input", "result": "Drift",
                     "drifted": True, "since": "2026-12-02T11:59:30Z", "psi": 1.234,
                     "js": 0.61, "samples": 900, "message": "psi 1.23 (raise above 0.25)"},
                    {"name": "predicted_class", "source": "output", "result": "Inconclusive",
                     "samples": 12, "message": "12 samples, fewer than minSamples 200"}],
                "unavailable": ["input_contrast: the profile has no such statistic"]},
            "conditions": [{"type": "DataDrift", "status": "True", "reason": "DataDrift",
                            "message": "drift in input_brightness"}],
        },
    })
    text = render(md)
    assert "monitoring: version 2 at 2026-12-02T12:00:00Z over 1m, model age 2.0d" in text
    assert "non-finite outputs 0" in text
    row = next(line for line in text.splitlines() if "input_brightness" in line)
    assert "Drift" in row and "yes" in row and "1.234" in row and "0.61" in row and "900" in row
    assert "cannot run: input_contrast: the profile has no such statistic" in text
    assert "DataDrift=True DataDrift: drift in input_brightness" in text


def test_status_view_says_an_age_from_the_publish_time_is_a_lower_bound() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision"},
        "spec": {"model": {"name": "m", "version": 2},
                 "repository": {"hostPath": {"path": "/r"}}},
        "status": {"phase": "Ready", "stableVersion": 2, "monitoring": {
            "version": 2, "evaluatedAt": "2026-12-02T12:00:00Z", "window": "1m",
            "modelAgeSeconds": 172800, "ageSource": "PublishTime",
            "publishedAt": "2026-11-30T12:00:00Z"}},
    })
    assert "over 1m, model age at least 2.0d (published 2026-11-30T12:00:00Z, data time " \
        "unknown)" in render(md)


def test_status_view_shows_retraining_runs_and_why_none_starts() -> None:
    md = ModelDeployment.model_validate({
        "metadata": {"name": "defects", "namespace": "vision"},
        "spec": {"model": {"name": "m", "fromTrainingRuns": {"matchLabels": {"p": "d"}}},
                 "repository": {"hostPath": {"path": "/r"}},
                 "retraining": {"template": {
                     "model": "m", "dataset": {"generated": {}},
                     "publish": {"repository": {"hostPath": {"path": "/r"}}}},
                     "triggers": {"dataDrift": {}}}},
        "status": {"stableVersion": 2, "retraining": {
            "sequence": 1, "startedLastDay": 1, "nextAllowedAt": "2026-01-01T11:00:00Z",
            "triggered": "DataDrift: DataDrift since 2026-01-01T09:50:00Z: input_brightness "
                         "psi=0.812",
            "notStarted": "cooldown 1h until 2026-01-01T11:00:00Z",
            "history": [{"name": "defects-retrain-1", "sequence": 1, "trigger": "DataDrift",
                         "startedAt": "2026-01-01T10:00:00Z", "phase": "Succeeded",
                         "version": 2, "promotedAt": "2026-01-01T10:20:00Z"}]}},
    })
    text = render(md)
    assert "retraining: 1 started in 24h (maxPerDay 4), next allowed 2026-01-01T11:00:00Z" \
        in text
    assert "triggered: DataDrift: DataDrift since" in text
    assert "not started: cooldown 1h until 2026-01-01T11:00:00Z" in text
    assert "defects-retrain-1  DataDrift  2026-01-01T10:00:00Z  Succeeded  2" in text
