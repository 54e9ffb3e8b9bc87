"""The review page's HTTP server (stdlib): the page, its JSON API and /metrics.

GET  /                  the page (page.html)
GET  /api/state         progress, the reviewer's queue (flagged first) and recent labels
GET  /api/sample?id=    one sample with its labels and resolved state
GET  /api/image?id=     its input as a PNG
POST /api/labels        {"sample": id, "label": class index or "unclear"}: appends a label
GET  /metrics           the reviewed-accuracy gauges, Prometheus text format
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelship.core.review.queue import Item, Progress, items, progress, queue
from modelship.review.store import Area, Snapshot, UnknownSampleError, classes_from_repository
from modelship_api.samples import UNCLEAR, LabelRecord

QUEUE_LIMIT = 50  # the page needs the next few; the counts are in the progress line
RECENT_LIMIT = 10
MAX_BODY = 4096


@dataclass(frozen=True)
class Settings:
    model: str
    reviewer: str
    low_confidence: float
    classes: Sequence[str] | None  # --classes
    repository: Path | None  # --model-repository


class Review:
    """What the handlers share: the area, who reviews, and the class names."""

    def __init__(self, area: Area, settings: Settings) -> None:
        self.area = area
        self.settings = settings
        # The last snapshot's view: a page load while nothing changed costs no more than
        # the stat calls that tell the snapshot is still current.
        self._view: _View | None = None
        self._unlabelled: dict[str, Item] = {}

    def _classes(self, snap: Snapshot) -> list[str]:
        if self.settings.classes:
            return list(self.settings.classes)
        if self.settings.repository is not None:
            found = classes_from_repository(self.settings.repository, self.settings.model,
                                            [r.version for r in snap.records])
            if found:
                return found
        highest = max([r.prediction for r in snap.records]
                      + [r.label for r in snap.labels if isinstance(r.label, int)], default=0)
        return [str(i) for i in range(highest + 1)]

    def view(self) -> _View:
        snap = self.area.snapshot()
        cached = self._view
        if cached is not None and cached.snapshot is snap:
            return cached
        every = items(snap.records, snap.latest, snap.resolved, self.settings.reviewer,
                      self.settings.low_confidence, self._unlabelled)
        mine = sorted((i for i in every if i.mine is not None),
                      key=lambda i: i.mine.at if i.mine else "", reverse=True)
        self._view = _View(snap, self._classes(snap), {i.record.id: i for i in every},
                           queue(every), progress(every), mine[:RECENT_LIMIT])
        return self._view

    def state(self, limit: int) -> dict[str, Any]:
        view = self.view()
        snap = view.snapshot
        return {
            "model": self.settings.model,
            "labelSet": self.area.label_set,
            "reviewer": self.settings.reviewer,
            "resolution": snap.settings.resolution,
            "classes": view.classes,
            "progress": _progress(view.progress),
            "queue": [_item(i) for i in view.queue[:limit]],
            "recent": [_item(i) for i in view.recent],
            "skipped": {"corruptParts": snap.corrupt_parts,
                        "badLabelLines": snap.bad_label_lines},
        }

    def item(self, sample_id: str) -> dict[str, Any]:
        self.area.record(sample_id)  # raises UnknownSampleError
        return _item(self.view().items[sample_id])

    def label(self, body: dict[str, Any]) -> dict[str, Any]:
        sample, label = body.get("sample"), body.get("label")
        if not isinstance(sample, str):
            raise ValueError("sample: the sample's id (a string) is required")
        classes = self.view().classes
        if label != UNCLEAR and not (isinstance(label, int) and not isinstance(label, bool)
                                     and 0 <= label < len(classes)):
            raise ValueError(f"label: a class index 0..{len(classes) - 1} or \"unclear\"")
        self.area.append(self.settings.reviewer, sample, label)
        view = self.view()
        return {"item": _item(view.items[sample]), "progress": _progress(view.progress)}

    def metrics(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Figures(self.settings.model, self.area.snapshot()))
        return generate_latest(registry)


@dataclass(frozen=True)
class _View:
    snapshot: Snapshot
    classes: list[str]
    items: dict[str, Item]
    queue: list[Item]
    progress: Progress
    recent: list[Item]  # this reviewer's newest labels first


class _Figures(Collector):
    def __init__(self, model: str, snap: Snapshot) -> None:
        self.model = model
        self.snap = snap

    def collect(self) -> Any:
        accuracy = GaugeMetricFamily(
            "modelship_reviewed_accuracy",
            "Fraction of the newest reviewed samples of a version (resolved to a class, "
            "within --accuracy-window) whose label equals the model's prediction.",
            labels=["model", "version", "source"])
        count = GaugeMetricFamily(
            "modelship_reviewed_samples",
            "How many reviewed samples modelship_reviewed_accuracy is over.",
            labels=["model", "version", "source"])
        for a in self.snap.accuracy:
            accuracy.add_metric([self.model, str(a.version), a.source], a.accuracy)
            count.add_metric([self.model, str(a.version), a.source], a.samples)
        total = GaugeMetricFamily(
            "modelship_reviewed_labels_total",
            "Samples of the model whose labels resolve to a class (all sources); grows when "
            "the reviewed data changes.", labels=["model"])
        total.add_metric([self.model], self.snap.labels_total)
        yield from (accuracy, count, total)


def _label(r: LabelRecord) -> dict[str, Any]:
    return {"reviewer": r.reviewer, "label": r.label, "at": r.at, "source": r.source}


def _item(i: Item) -> dict[str, Any]:
    rec = i.record
    return {
        "id": rec.id, "version": rec.version, "time": rec.time, "prediction": rec.prediction,
        "confidence": rec.confidence, "reason": rec.reason, "oversampling": rec.oversampling,
        "flags": list(i.flags), "labels": [_label(r) for r in i.labels],
        "resolved": None if i.resolved is None else {
            "label": i.resolved.label, "reviewers": i.resolved.reviewers,
            "disagreement": i.resolved.disagreement},
        "mine": None if i.mine is None else i.mine.label,
    }


def _progress(p: Progress) -> dict[str, int]:
    return {"samples": p.samples, "reviewed": p.reviewed, "mine": p.mine,
            "disagree": p.disagree, "unresolved": p.unresolved, "unclear": p.unclear,
            "toReview": p.to_review}


def _page() -> bytes:
    return resources.files("modelship.review").joinpath("page.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    review: Review  # set on the subclass make_server builds
    server_version = "modelship-review"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per image request would drown the startup line a user needs

    def _send(self, status: int, body: bytes, content_type: str,
              cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: object) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/":
                self._send(200, _page(), "text/html; charset=utf-8")
            elif url.path == "/api/state":
                limit = min(max(int(query.get("limit", QUEUE_LIMIT)), 0), 1000)
                self._json(200, self.review.state(limit))
            elif url.path == "/api/sample":
                self._json(200, self.review.item(query.get("id", "")))
            elif url.path == "/api/image":
                # A part never changes once visible: its images can be cached for good.
                self._send(200, self.review.area.image_png(query.get("id", "")), "image/png",
                           cache="max-age=31536000, immutable")
            elif url.path == "/metrics":
                self._send(200, self.review.metrics(), "text/plain; version=0.0.4")
            else:
                self._error(404, f"no page at {url.path}")
        except UnknownSampleError as err:
            self._error(404, f"no sample {err.args[0]!r} in this production area")
        except ValueError as err:
            self._error(400, str(err))

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/labels":
            self._error(404, f"no API at {self.path}")
            return
        # JSON only: a cross-site form cannot send it without a CORS preflight, which this
        # server never grants, so another page open in the browser cannot write labels.
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_BODY} bytes")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(body, dict):
                raise ValueError("send a JSON object: {\"sample\": id, \"label\": ...}")
            self._json(200, self.review.label(body))
        except UnknownSampleError as err:
            self._error(404, f"no sample {err.args[0]!r} in this production area")
        except ValueError as err:
            self._error(400, str(err))


def make_server(review: Review, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"review": review})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(review: Review, host: str, port: int) -> None:
    server = make_server(review, host, port)
    bound_port = server.server_address[1]
    print(f"Review page: http://{_url_host(host)}:{bound_port}/ (model {review.settings.model}, "
          f"label set {review.area.label_set}, reviewer {review.settings.reviewer})",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()
