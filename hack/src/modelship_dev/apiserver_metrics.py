"""The kube-apiserver's own request counters (`apiserver_request_total`), read with the
local cluster's admin credentials: how many requests reached the server, by verb and
resource, whoever sent them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from modelship_dev.cluster import LocalCluster

# Every resource the operator reads or writes.
OPERATOR_RESOURCES = frozenset({"modeldeployments", "trainingruns", "deployments",
                                "services", "pods", "jobs", "grpcroutes", "events"})
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Requests:
    verb: str
    resource: str
    subresource: str
    count: float


def scrape(cluster: LocalCluster) -> list[Requests]:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    out = []
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
        labels = dict(_LABEL.findall(labels_text))
        out.append(Requests(labels.get("verb", ""), labels.get("resource", ""),
                            labels.get("subresource", ""), float(value)))
    return out


def total(samples: Iterable[Requests], resources: Iterable[str] = OPERATOR_RESOURCES,
          writes_only: bool = False) -> float:
    """Requests to `resources`, watches left out (a watch is one long request, counted
    when it ends)."""
    wanted = set(resources)
    return sum(s.count for s in samples if s.resource in wanted and s.verb != "WATCH"
               and (not writes_only or s.verb in WRITE_VERBS))


def delta(before: Iterable[Requests], after: Iterable[Requests],
          resources: Iterable[str] = OPERATOR_RESOURCES) -> dict[str, float]:
    """`verb resource[/subresource]` -> requests between two scrapes (watches left out)."""
    wanted = set(resources)

    def key(s: Requests) -> str:
        return f"{s.verb} {s.resource}" + (f"/{s.subresource}" if s.subresource else "")

    counts: dict[str, float] = {}
    for s in after:
        if s.resource in wanted and s.verb != "WATCH":
            counts[key(s)] = counts.get(key(s), 0.0) + s.count
    for s in before:
        if s.resource in wanted and s.verb != "WATCH":
            counts[key(s)] = counts.get(key(s), 0.0) - s.count
    return {k: v for k, v in counts.items() if v}


def write_latency(cluster: LocalCluster) -> dict[str, tuple[float, float]]:
    """`verb resource[/subresource]` -> (seconds, requests) the API server spent serving
    writes to the operator's resources so far (`apiserver_request_duration_seconds`)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    out: dict[str, tuple[float, float]] = {}
    for line in text.splitlines():
        for suffix, index in (("_sum{", 0), ("_count{", 1)):
            prefix = "apiserver_request_duration_seconds" + suffix
            if not line.startswith(prefix):
                continue
            labels_text, value = line[len(prefix):].rsplit("} ", 1)
            labels = dict(_LABEL.findall(labels_text))
            if labels.get("resource") not in OPERATOR_RESOURCES or \
                    labels.get("verb") not in WRITE_VERBS:
                continue
            key = f"{labels['verb']} {labels['resource']}" + (
                f"/{labels['subresource']}" if labels.get("subresource") else "")
            pair = list(out.get(key, (0.0, 0.0)))
            pair[index] += float(value)
            out[key] = (pair[0], pair[1])
    return out
