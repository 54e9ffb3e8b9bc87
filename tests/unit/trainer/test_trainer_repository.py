"""Publishing: atomic, never overwriting, safe under concurrency, clean after failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelship_trainer.errors import TrainerError
from modelship_trainer.repository import (
    STAGING_PREFIX,
    production_model,
    publish,
    published_versions,
    rename_noreplace,
    sweep_stale,
    write_if_absent,
)


def write_files(tag: str) -> Callable[[Path], None]:
    def fill(d: Path) -> None:
        (d / "model.onnx").write_text(tag)
        (d / "config.pbtxt").write_text(f"# {tag}\n")
    return fill


def entries(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir())


def test_versions_count_up_and_never_overwrite(tmp_path: Path) -> None:
    assert publish(tmp_path, "m", write_files("a")).version == 1
    (tmp_path / "m" / "3").mkdir()  # an empty numeric dir still holds its number
    second = publish(tmp_path, "m", write_files("b"))
    assert second.version == 4 and second.path == tmp_path / "m" / "4"
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == "a"
    assert (tmp_path / "m" / "4" / "model.onnx").read_text() == "b"
    assert oct((tmp_path / "m" / "4").stat().st_mode & 0o777) == "0o755"


def test_a_version_taken_while_writing_moves_to_the_next_number(tmp_path: Path) -> None:
    def fill(d: Path) -> None:
        write_files("late")(d)
        other = tmp_path / "m" / "1"  # another run publishes first
        other.mkdir()
        (other / "model.onnx").write_text("other")

    assert publish(tmp_path, "m", fill).version == 2
    assert (tmp_path / "m" / "1" / "model.onnx").read_text() == "other"
    assert (tmp_path / "m" / "2" / "model.onnx").read_text() == "late"


def test_failed_fill_leaves_nothing(tmp_path: Path) -> None:
    def fill(d: Path) -> None:
        (d / "model.onnx").write_text("half")
        raise TrainerError("disk full")

    with pytest.raises(TrainerError, match="disk full"):
        publish(tmp_path, "m", fill)
    assert entries(tmp_path / "m") == []


def test_rename_noreplace_refuses_existing_targets(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    for target in ("empty", "full"):
        with pytest.raises(FileExistsError):
            rename_noreplace(src, tmp_path / target)
    rename_noreplace(src, tmp_path / "new")
    assert (tmp_path / "new").is_dir() and not src.exists()


def test_model_config_written_once(tmp_path: Path) -> None:
    publish(tmp_path, "m", write_files("a"), model_config="first\n")
    publish(tmp_path, "m", write_files("b"), model_config="second\n")
    assert (tmp_path / "m" / "config.pbtxt").read_text() == "first\n"
    assert not write_if_absent(tmp_path / "m" / "config.pbtxt", "third\n")
    assert [p for p in entries(tmp_path / "m") if p.startswith(".")] == []


PUBLISHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from modelship_trainer.repository import publish
    repo, tag = Path(sys.argv[1]), sys.argv[2]
    start_at, hold = float(sys.argv[3]), float(sys.argv[4])
    def fill(d):
        (d / "model.onnx").write_text(tag)
        time.sleep(hold)
    time.sleep(max(0.0, start_at - time.time()))
    print(publish(repo, "m", fill).version, flush=True)
""")


def run_publisher(repo: Path, tag: str, start_at: float, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, str(repo), tag, str(start_at),
                             str(hold)], stdout=subprocess.PIPE, text=True)


def test_two_processes_publishing_at_once_get_different_versions(tmp_path: Path) -> None:
    start_at = time.time() + 1.5  # both interpreters are up by then and start together
    procs = [run_publisher(tmp_path, tag, start_at, 0.3) for tag in ("a", "b")]
    versions = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        versions.append(int(out.strip()))
    assert sorted(versions) == [1, 2]
    contents = {(tmp_path / "m" / str(v) / "model.onnx").read_text() for v in versions}
    assert contents == {"a", "b"}
    assert entries(tmp_path / "m") == ["1", "2"]


def test_killed_publish_leaves_only_an_ignored_staging_dir(tmp_path: Path) -> None:
    proc = run_publisher(tmp_path, "killed", 0.0, 60.0)
    try:
        deadline = time.monotonic() + 30
        staged: list[Path] = []
        while not staged:
            assert time.monotonic() < deadline, "publisher never started writing"
            assert proc.poll() is None, f"publisher exited with {proc.returncode}"
            staged = list((tmp_path / "m").glob(f"{STAGING_PREFIX}*/model.onnx"))
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    names = entries(tmp_path / "m")
    assert len(names) == 1 and names[0].startswith(STAGING_PREFIX)
    assert published_versions(tmp_path / "m") == []
    assert publish(tmp_path, "m", write_files("next")).version == 1
    # Young staging dirs may belong to a live run; old ones are swept.
    assert sweep_stale(tmp_path / "m") == []
    assert sweep_stale(tmp_path / "m", older_than_s=0.0) == [tmp_path / "m" / names[0]]
    assert entries(tmp_path / "m") == ["1"]


def test_production_model_newest_or_pinned(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    assert production_model(model_dir, None) is None
    publish(tmp_path, "m", write_files("a"))
    publish(tmp_path, "m", write_files("b"))
    assert production_model(model_dir, None) == (2, model_dir / "2" / "model.onnx")
    assert production_model(model_dir, 1) == (1, model_dir / "1" / "model.onnx")
    with pytest.raises(TrainerError, match=r"production version 7 of m has no model\.onnx"):
        production_model(model_dir, 7)
