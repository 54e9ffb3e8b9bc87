"""The chart's PrometheusRule as Prometheus loads it, checked by promtool.

`python -m modelship_dev.alert_rules` (part of `make lint`) renders the chart with each
values file under charts/modelship/ci/ as a cluster with the Prometheus Operator would,
and runs `promtool check rules` on the rule groups: a broken expression never ships.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelship_dev import tools

CHART = Path(__file__).resolve().parents[3] / "charts" / "modelship"


def render(*args: str, namespace: str = "modelship") -> list[dict[str, Any]]:
    """`helm template` of the chart where monitoring.coreos.com/v1 is served."""
    out = subprocess.run(
        [str(tools.binary("helm")), "template", "modelship", str(CHART),
         "--namespace", namespace, "--kube-version", tools.KUBERNETES.version,
         "--api-versions", "monitoring.coreos.com/v1", *args],
        capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"helm template {' '.join(args)}: {out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def rule_groups(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The groups of every PrometheusRule, as a Prometheus rule file."""
    return {"groups": [g for o in objects if o["kind"] == "PrometheusRule"
                       for g in o["spec"]["groups"]]}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.binary("promtool")), *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd)


def check(rules: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on a rule file with these groups."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(rules))
        return promtool("check", "rules", str(path))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("values", nargs="*", type=Path,
                        help="values files (default: the chart's ci/*-values.yaml)")
    args = parser.parse_args(argv)
    failed = False
    for values in args.values or sorted((CHART / "ci").glob("*-values.yaml")):
        rules = rule_groups(render("-f", str(values)))
        if not rules["groups"]:
            print(f"promtool check rules: {values}: no PrometheusRule")
            continue
        out = check(rules)
        said = (out.stdout + out.stderr).strip().splitlines()
        # On success only the verdict; the temporary file's name says nothing.
        print(f"promtool check rules: {values.name}: "
              + (said[-1].strip() if out.returncode == 0 else "\n".join(said)))
        failed = failed or out.returncode != 0
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
