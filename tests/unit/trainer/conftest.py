"""Fixtures that run the real trainer command once, small enough for unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainer_harness import SMALL, TrainerRun, run_trainer


@pytest.fixture(scope="session")
def published_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainerRun]:
    """A first version of `defects` published with the python backend."""
    root = tmp_path_factory.mktemp("published")
    run = run_trainer(["--model", "defects", "--repository", str(root / "repo"),
                       "--backend", "python", *SMALL], root / "termination-log")
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "repo", run
