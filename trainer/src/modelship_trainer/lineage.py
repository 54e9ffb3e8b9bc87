"""Provenance recorded with every version: which code made it."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from modelship_api.training_result import ENV_CODE_VERSION


@cache
def code_version() -> str:
    """The image's declared version (e.g. a git commit) or package version + source digest."""
    declared = os.environ.get(ENV_CODE_VERSION, "").strip()
    if declared:
        return declared
    try:
        dist = version("modelship")
    except PackageNotFoundError:
        dist = "0+unknown"
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return f"{dist}+src.{h.hexdigest()[:12]}"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
