"""What the demo's acts share: its resources' names, the timeline, the watcher that reports
each change of the ModelDeployment and the TrainingRuns (and samples what the chart draws),
and bounded waits on their status."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelship_api.retraining import EFFECTIVE_CONDITION
from modelship_dev.background import Background
from modelship_dev.chart import ReviewReading, Sample
from modelship_dev.cluster import LocalCluster

NAMESPACE = "modelship-demo"
MODEL = "surface-defects"
MD = "defects"
FOLLOW = {"pipeline": "defects"}
WATCHED_CONDITIONS = ("DataDrift", "PredictionDrift", "Stale", "NumericFault",
                      EFFECTIVE_CONDITION)
REVIEW_POLL_S = 2.0  # the review page is scraped every 2 s


@dataclass
class Timeline:
    """Timestamped lines, printed as they happen and kept for the summary."""

    log: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, text: str) -> None:
        line = f"[{self.now():6.1f}s] {text}"
        with self.lock:
            self.lines.append(line)
        self.log(line)


def vector_by_version(answer: dict[str, Any]) -> dict[int, float]:
    """An instant-query answer of series labelled `version`, as {version: value}; series
    without a whole-number version are left out."""
    out: dict[int, float] = {}
    for series in (answer.get("data") or {}).get("result") or []:
        version = (series.get("metric") or {}).get("version", "")
        if version.isdigit():
            out[int(version)] = float(series["value"][1])
    return out


def scalar(answer: dict[str, Any]) -> float | None:
    """The value of a one-series instant-query answer; None when there is no series."""
    result = (answer.get("data") or {}).get("result") or []
    return float(result[0]["value"][1]) if result else None


class Watcher(Background):
    """Polls the ModelDeployment and the TrainingRuns (bounded by `stop`), reports each
    change to the timeline and samples the traffic split for the chart; with a Prometheus
    URL, also the reviewed accuracy per version (`modelship review`'s gauges, the series the
    operator's retraining reads)."""

    def __init__(self, cluster: LocalCluster, timeline: Timeline,
                 prometheus_url: str | None = None) -> None:
        super().__init__("demo-watcher")
        self.cluster, self.timeline = cluster, timeline
        self.prometheus_url = prometheus_url
        self.samples: list[Sample] = []
        self.reviewed: list[ReviewReading] = []
        self.events: list[tuple[float, str]] = []
        self._seen: dict[str, tuple[Any, ...]] = {}

    def _get(self, kind: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("-n", NAMESPACE, "get", kind, "-o", "json", check=False)
        return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []

    def _changed(self, key: str, value: tuple[Any, ...]) -> bool:
        if self._seen.get(key) == value:
            return False
        self._seen[key] = value
        return True

    def _run(self) -> None:
        next_review = 0.0
        while not self._stop.wait(0.5):
            for run in self._get("trainingruns"):
                st = run.get("status") or {}
                name = run["metadata"]["name"]
                if st.get("phase") and self._changed(name, (st.get("phase"),)):
                    detail = st.get("message") or ""
                    self.timeline(f"TrainingRun {name}: {st['phase']}"
                                  + (f" - {detail}" if detail else ""))
            for md in self._get("modeldeployments"):
                self._deployment(md.get("status") or {})
            if self.prometheus_url is not None and time.monotonic() >= next_review:
                next_review = time.monotonic() + REVIEW_POLL_S
                self._review()

    def _query(self, promql: str) -> dict[str, Any]:
        assert self.prometheus_url is not None
        url = f"{self.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                answer: dict[str, Any] = json.loads(resp.read())
                return answer
        except (OSError, urllib.error.URLError, ValueError):
            return {}

    def _review(self) -> None:
        where = f'{{model="{MODEL}",source="all"}}'
        accuracy = vector_by_version(self._query(
            f"max by (version) (modelship_reviewed_accuracy{where})"))
        count = vector_by_version(self._query(
            f"max by (version) (modelship_reviewed_samples{where})"))
        total = scalar(self._query(f'max(modelship_reviewed_labels_total{{model="{MODEL}"}})'))
        if total is None and not accuracy:
            return
        with self.timeline.lock:
            self.reviewed.append(ReviewReading(
                self.timeline.now(), round(total or 0),
                {v: (a, round(count.get(v, 0))) for v, a in accuracy.items()}))

    def review_reading(self, reached: Callable[[ReviewReading], bool]) -> ReviewReading | None:
        """The newest reading, when `reached` holds for it."""
        with self.timeline.lock:
            last = self.reviewed[-1] if self.reviewed else None
        return last if last is not None and reached(last) else None

    def last_reading_before(self, at: float) -> ReviewReading | None:
        with self.timeline.lock:
            return next((r for r in reversed(self.reviewed) if r.at < at), None)

    def _deployment(self, st: dict[str, Any]) -> None:
        weights = st.get("weights") or {}
        stable, candidate = st.get("stableVersion"), st.get("candidateVersion")
        stage = (st.get("rollout") or {}).get("stage", "")
        self.samples.append(Sample(self.timeline.now(), stable, candidate,
                                   int(weights.get("candidate", 0))))
        self._conditions(st)
        state = (st.get("phase"), stable, candidate, weights.get("candidate"), stage)
        if st.get("phase") and self._changed("md", state):
            split = "no version serving yet" if stable is None else (
                f"v{stable} {weights.get('stable', 100)}%"
                + (f" / v{candidate} {weights.get('candidate', 0)}%" if candidate else ""))
            text = f"ModelDeployment {MD}: {st['phase']}{' ' + stage if stage else ''}, {split}"
            if st.get("phase") in ("RolledBack", "Ready") and st.get("message"):
                text += f" - {st['message']}"
            self.timeline(text)
            self.events.append((self.timeline.now(), f"{st['phase']} {stage}".strip()))

    def _conditions(self, st: dict[str, Any]) -> None:
        """Each watched condition's turns to True, and back once it was True."""
        for c in st.get("conditions") or []:
            if c["type"] not in WATCHED_CONDITIONS:
                continue
            was = self._seen.get(c["type"])
            if self._changed(c["type"], (c["status"],)) and (
                    c["status"] == "True" or was == ("True",)):
                self.timeline(f"ModelDeployment {MD}: {c['type']}={c['status']} "
                              f"({c.get('reason')}) - {c.get('message', '')}")
                self.events.append((self.timeline.now(), f"{c['type']}={c['status']}"))


def wait_status(cluster: LocalCluster, kind: str, name: str,
                reached: Callable[[dict[str, Any]], bool], what: str, timeout: float
                ) -> dict[str, Any]:
    """Poll the status of `kind/name` until `reached` holds (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = cluster.kubectl("-n", NAMESPACE, "get", kind, name, "-o", "json", check=False)
        st = (json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}
        if reached(st):
            return dict(st)
        time.sleep(0.5)
    raise TimeoutError(f"{kind} {name} {what} after {timeout:.0f}s; "
                       f"status: {json.dumps(st)[:2000]}")


def wait_run(cluster: LocalCluster, name: str, timeout: float) -> dict[str, Any]:
    return wait_status(cluster, "trainingrun", name, lambda st: st.get("phase") in (
        "Succeeded", "Failed", "Rejected"), "did not finish", timeout)


def wait_md(cluster: LocalCluster, phase: str, stable: int, timeout: float
            ) -> dict[str, Any]:
    return wait_status(cluster, "modeldeployment", MD, lambda st: st.get(
        "phase") == phase and st.get("stableVersion") == stable,
        f"not {phase} with stable v{stable}", timeout)


def expect(status: dict[str, Any], phase: str) -> None:
    if status.get("phase") != phase:
        raise RuntimeError(f"expected {phase}, got {status.get('phase')}: "
                           f"{status.get('message')}")
