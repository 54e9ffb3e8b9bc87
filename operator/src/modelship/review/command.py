"""`modelship review`: check the flags against the volume, then serve the page."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import click

from modelship.review.server import Review, Settings, serve
from modelship.review.store import Area
from modelship_api import samples


def listen_address(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8090",
                                 param_hint="--listen")
    return host.strip("[]"), int(port)


def start(*, volume_path: Path, model: str, reviewer: str, label_set: str,
          resolution: str | None, listen: str, classes: str, model_repository: Path | None,
          accuracy_window: int, low_confidence: float) -> None:
    for value, hint in ((reviewer, "--reviewer"), (label_set, "--label-set"),
                        (model, "--model")):
        if not samples.NAME.match(value):
            raise click.BadParameter(
                f"{value!r}: use letters, digits, '_', '.' or '-' (at most 63, starting "
                "with a letter or digit)", param_hint=hint)
    area = samples.production_area(volume_path, model)
    if not area.is_dir():
        raise click.BadParameter(
            f"no production area {area}: the serving runner writes "
            f"<volume>/{samples.PRODUCTION_FOLDER}/<model>/ once sampling is on; check "
            "--volume-path and --model", param_hint="--volume-path")
    names = [c.strip() for c in classes.split(",") if c.strip()] or None
    host, port = listen_address(listen)
    review = Review(Area(area, label_set, accuracy_window),
                    Settings(model, reviewer, low_confidence, names, model_repository))
    try:
        if resolution is not None:
            _settle(area, label_set, cast(Literal["consensus", "unclear"], resolution))
        review.view()  # reads the area once: a bad settings.json is said now, not per page
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    try:
        serve(review, host, port)
    except OSError as err:
        raise click.BadParameter(f"cannot listen on {listen}: {err.strerror or err}",
                                 param_hint="--listen") from None


def _settle(area: Path, label_set: str, resolution: Literal["consensus", "unclear"]) -> None:
    """A new label set gets the asked rule; an existing one must already have it (labels
    resolved one way must not silently resolve another way)."""
    path = samples.label_set_folder(area, label_set) / samples.SETTINGS_FILE
    if not path.is_file():
        samples.write_settings(area, label_set, samples.LabelSetSettings(resolution=resolution))
        return
    current = samples.read_settings(area, label_set).resolution
    if current != resolution:
        raise click.BadParameter(
            f"label set {label_set!r} resolves by {current} ({path}); drop --resolution or "
            "start a new --label-set", param_hint="--resolution")
