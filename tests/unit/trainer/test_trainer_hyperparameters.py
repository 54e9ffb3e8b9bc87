"""Hyperparameters arrive as strings: parsed per declared type, errors name the key."""

from __future__ import annotations

import pytest

from modelship_trainer.errors import InvalidSpecError
from modelship_trainer.hyperparameters import (
    Hyperparameter,
    as_strings,
    parse_hyperparameters,
)
from modelship_trainer.surface_defects import SurfaceDefectsRecipe

DECLARED = SurfaceDefectsRecipe.hyperparameters


def test_defaults_and_overrides() -> None:
    hp = parse_hyperparameters({"epochs": " 3 ", "lr": "1e-3"}, DECLARED)
    assert hp["epochs"] == 3 and hp["lr"] == pytest.approx(1e-3)
    assert hp["batch_size"] == 64  # default kept
    assert as_strings(hp)["epochs"] == "3"


@pytest.mark.parametrize(("raw", "message"), [
    ({"epochs": "five"}, r"'epochs': expected an integer, got 'five'"),
    ({"lr": "fast"}, r"'lr': expected a number, got 'fast'"),
    ({"lr": "nan"}, r"'lr': must be finite"),
    ({"epochs": "0"}, r"'epochs': 0 is below the minimum 1"),
    ({"batch_size": "100000"}, r"'batch_size': 100000 is above the maximum 65536"),
    ({"epoch": "3"}, r"unknown hyperparameter 'epoch'; this recipe accepts: batch_size, epochs"),
])
def test_errors_name_the_key(raw: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        parse_hyperparameters(raw, DECLARED)


def test_booleans() -> None:
    declared = {"aug": Hyperparameter("aug", bool, False)}
    assert parse_hyperparameters({"aug": "Yes"}, declared) == {"aug": True}
    assert as_strings({"aug": True}) == {"aug": "true"}
    with pytest.raises(InvalidSpecError, match="'aug': expected true or false"):
        parse_hyperparameters({"aug": "maybe"}, declared)
