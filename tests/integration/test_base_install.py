"""What the operator's image gets: `pip install ./operator/api .` in a clean virtualenv, and
nothing else. Its `modelship` has the operator's commands only, runs the operator against the
test cluster, shows a resource's status and serves the review page (no numpy needed); the
trainer's and the development environment's packages (numpy, torch, tritonclient,
modelship_dev) are not there. The trainer's declared
requirements, followed transitively, do not reach Kopf or lightkube either."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import urllib.request
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelship_api.samples import production_area
from modelship_dev.cluster import SIMULATED_TOLERATION, LocalCluster
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import REPO, Kubectl, wait_for
from tests.production_area import Sample, write_part

pytestmark = pytest.mark.integration

OPERATOR_COMMANDS = {"operator", "status", "promote", "abort", "pause", "resume", "retry",
                     "review"}
SAMPLE = REPO / "crds" / "samples" / "modeldeployment-local.yaml"
_SITE = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
_IGNORE = shutil.ignore_patterns("*.egg-info", "__pycache__", "build", "dist")


@dataclass
class BaseInstall:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *argv: str | Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a program of the virtualenv as a user would: its own bin/ first on PATH, no
        PYTHONPATH, away from the repository."""
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        base["PATH"] = f"{self.root / 'bin'}{os.pathsep}{base.get('PATH', '')}"
        result = subprocess.run([str(a) for a in argv], env={**base, **(env or {})},
                                cwd=self.root, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def modelship(self, *args: str, env: dict[str, str] | None = None,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.root / "bin" / "modelship", *args, env=env, check=check)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseInstall:
    """A clean virtualenv with only modelship-api and modelship (and what they require, from
    the package index through pip's cache). The two projects are copied out first, so that
    building them writes nothing into the repository."""
    work = tmp_path_factory.mktemp("base-install")
    api = work / "src" / "api"
    shutil.copytree(REPO / "operator" / "api", api, ignore=_IGNORE)
    operator = work / "src" / "operator"
    operator.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, operator / name)
    shutil.copytree(REPO / "operator" / "src", operator / "operator" / "src", ignore=_IGNORE)

    install = BaseInstall(work / "venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(install.root)
    install.run(install.python, "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", api, operator)
    install.run(install.python, "-m", "pip", "check")
    return install


def _commands(help_text: str) -> set[str]:
    section = help_text.split("Commands:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^  (\S+)", section, re.MULTILINE)}


def test_the_base_command_lists_only_the_operators_commands(base: BaseInstall) -> None:
    out = base.modelship("--help").stdout
    assert _commands(out) == OPERATOR_COMMANDS, out
    operator_help = base.modelship("operator", "--help").stdout
    assert "--namespace" in operator_help and "--liveness" in operator_help
    unknown = base.modelship("dev", "up", check=False)
    assert unknown.returncode == 2 and "No such command 'dev'" in unknown.stderr


def test_every_operator_module_imports_with_the_base_requirements(base: BaseInstall) -> None:
    code = ("import importlib, pkgutil, modelship\n"
            "for m in pkgutil.walk_packages(modelship.__path__, 'modelship.'):\n"
            "    importlib.import_module(m.name)\n"
            "import modelship_api.crdgen, kopf, lightkube\n")
    base.run(base.python, "-c", code)


def test_the_base_install_serves_the_review_page_without_numpy(base: BaseInstall,
                                                                tmp_path: Path) -> None:
    """images.npy is read and PNG written with the stdlib; the page ships in the package."""
    area = production_area(tmp_path, "defects")
    images = np.linspace(0, 1, 2 * 16, dtype=np.float32).reshape(2, 1, 4, 4)
    ids = write_part(area, 1, datetime(2026, 12, 2, 19, tzinfo=UTC), images,
                     [Sample(0, 0.9), Sample(1, 0.5)])
    proc = subprocess.Popen(
        [base.root / "bin" / "modelship", "review", "--volume-path", tmp_path, "--model",
         "defects", "--reviewer", "ops", "--listen", "127.0.0.1:0"], cwd=base.root,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.match(r"Review page: (http://\S+/)", line)
        assert found, line + proc.stdout.read()
        url = found.group(1)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"Review production samples" in r.read()
        with urllib.request.urlopen(f"{url}api/image?id={ids[1]}", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/png"
            assert r.read().startswith(b"\x89PNG\r\n\x1a\n")
        with urllib.request.urlopen(f"{url}metrics", timeout=10) as r:
            assert 'modelship_reviewed_labels_total{model="defects"} 0.0' in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("module", ["numpy", "torch", "tritonclient", "modelship_dev",
                                    "modelship_trainer"])
def test_training_and_development_packages_are_absent(base: BaseInstall, module: str) -> None:
    result = base.run(base.python, "-c", f"import {module}", check=False)
    assert result.returncode == 1
    assert f"ModuleNotFoundError: No module named '{module}'" in result.stderr


@pytest.fixture
def base_operator(base: BaseInstall, cluster: LocalCluster, kubectl: Kubectl,
                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OperatorProcess]:
    """`modelship operator` of the clean virtualenv, watching the test's namespace."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    op = OperatorProcess(cluster.kubeconfig, tmp_path, kubectl.namespace, python=base.python)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def test_the_base_install_runs_the_operator_and_shows_status(
        base: BaseInstall, cluster: LocalCluster, kubectl: Kubectl,
        base_operator: OperatorProcess) -> None:
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    ns = kubectl.namespace

    missing = base.modelship("status", "defects-dev", "-n", ns, env=env, check=False)
    assert missing.returncode == 1
    assert f"modeldeployment {ns}/defects-dev not found" in missing.stderr

    sample = yaml.safe_load(SAMPLE.read_text())
    sample["spec"]["runtime"]["tolerations"] = [SIMULATED_TOLERATION]  # kwok's nodes
    kubectl.apply(sample)

    def ready() -> str | None:
        text = base.modelship("status", "defects-dev", "-n", ns, env=env).stdout
        return text if "phase:      Ready" in text else None

    text = wait_for("Ready in `modelship status`", ready, timeout=90, interval=1)
    assert text.splitlines()[0] == f"{ns}/defects-dev  model surface-defects"
    assert "  stable:     1" in text and "Ready=True" in text

    # A manual control, written by this `modelship` and handled by this operator (nothing to
    # pause at a stable version, but the operator records that it saw the command).
    paused = base.modelship("pause", "defects-dev", "-n", ns, env=env).stdout
    found = re.search(r"\(modelship\.io/command=(pause@\S+)\)$", paused.strip())
    assert paused.startswith(f"{ns}/defects-dev: pause requested") and found, paused
    wait_for("the command in status.lastCommand", lambda: (
        ((kubectl.get("md", "defects-dev") or {}).get("status") or {}).get("lastCommand")
        == found.group(1)), timeout=30)
    assert base_operator.alive(), base_operator.log_tail()


def _requirement_closure(distribution: str) -> set[str]:
    """Names of the distributions that `distribution` requires, transitively, as declared in
    the installed metadata (extras only where a requirement asks for them)."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(distribution, frozenset())]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key in seen and not extras) or key in ("pip", "setuptools"):
            continue
        seen.add(key)
        # What is installed in this interpreter's site-packages (not a stale *.egg-info that
        # the current directory may hold); a name not installed here is a leaf.
        found = list(metadata.distributions(name=name, path=_SITE))
        for text in (found[0].requires or []) if found else []:
            req = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e)
                                                  for e in environments):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return seen - {canonicalize_name(distribution)}


def test_declared_requirements_keep_the_images_apart() -> None:
    trainer = _requirement_closure("modelship-trainer")
    assert "modelship-api" in trainer and "torch" in trainer
    assert not {"modelship", "kopf", "lightkube", "modelship-dev"} & trainer, trainer
    declared = next(iter(metadata.distributions(name="modelship-trainer", path=_SITE)))
    tensorrt_extra = {canonicalize_name(Requirement(r).name)
                      for r in declared.requires or [] if "extra ==" in r}
    assert tensorrt_extra == {"tensorrt"}

    operator = _requirement_closure("modelship")
    assert {"modelship-api", "kopf", "lightkube"} <= operator
    assert not {"numpy", "torch", "tritonclient", "modelship-trainer",
                "modelship-dev", "cryptography"} & operator, operator

    api = _requirement_closure("modelship-api")
    assert {"pydantic", "pyyaml"} <= api
    assert not {"kopf", "lightkube", "httpx", "modelship"} & api, api
