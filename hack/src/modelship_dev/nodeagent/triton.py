"""`tritonserver` as the nvidia-pytriton wheel ships it: the binary, its libraries, and a
backend folder holding the Python backend with the stub built for this interpreter (placed
next to the backend, as pytriton does)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# Where the prepared backend folder appears inside every container.
BACKENDS_MOUNT = "/.modelship/triton-backends"


@dataclass(frozen=True)
class TritonWheel:
    binary: Path
    libraries: Path
    python_backend: Path
    stub: Path


def find_wheel() -> TritonWheel:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("tritonserver comes from the nvidia-pytriton wheel, "
                                "which is not installed (pip install nvidia-pytriton)")
    root = Path(spec.origin).parent
    server = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheel = TritonWheel(server / "bin" / "tritonserver", root.parent / "nvidia_pytriton.libs",
                        server / "backends" / "python",
                        server / "python_backend_stubs" / version / "triton_python_backend_stub")
    for path in (wheel.binary, wheel.libraries, wheel.python_backend, wheel.stub):
        if not path.exists():
            raise FileNotFoundError(f"nvidia-pytriton is incomplete: {path} is missing")
    return wheel


def prepare_backends(wheel: TritonWheel, folder: Path) -> Path:
    """A backend folder with the Python backend and this interpreter's stub (idempotent)."""
    python = folder / "python"
    if not (python / "triton_python_backend_stub").exists():
        shutil.copytree(wheel.python_backend, python, dirs_exist_ok=True)
        shutil.copy(wheel.stub, python / "triton_python_backend_stub")
    return folder


def resolve(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Rewrite a `tritonserver` command to the wheel's binary, its libraries and backends."""
    wheel = find_wheel()
    args = argv[1:]
    if not any(a.startswith("--backend-directory") for a in args):
        args.append(f"--backend-directory={BACKENDS_MOUNT}")
    libs = ":".join(p for p in (str(wheel.libraries), env.get("LD_LIBRARY_PATH", "")) if p)
    return [str(wheel.binary), *args], {**env, "LD_LIBRARY_PATH": libs}
