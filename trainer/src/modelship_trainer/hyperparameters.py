"""Hyperparameters arrive as strings (from the TrainingRun spec); recipes declare their types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelship_trainer.errors import InvalidSpecError

Value = int | float | str | bool

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Hyperparameter:
    """One declared hyperparameter: its type, default and optional bounds."""

    name: str
    kind: type[int] | type[float] | type[str] | type[bool]
    default: Value
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    def parse(self, raw: str) -> Value:
        text = raw.strip()
        value: Value
        if self.kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise InvalidSpecError(f"hyperparameter {self.name!r}: expected true or false, "
                                  f"got {raw!r}")
            value = text.lower() in _TRUE
        elif self.kind is int:
            try:
                value = int(text)
            except ValueError:
                raise InvalidSpecError(f"hyperparameter {self.name!r}: expected an integer, "
                                  f"got {raw!r}") from None
        elif self.kind is float:
            try:
                value = float(text)
            except ValueError:
                raise InvalidSpecError(f"hyperparameter {self.name!r}: expected a number, "
                                  f"got {raw!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise InvalidSpecError(f"hyperparameter {self.name!r}: must be finite, got {raw!r}")
        else:
            value = raw
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise InvalidSpecError(f"hyperparameter {self.name!r}: {value} is below the "
                                  f"minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise InvalidSpecError(f"hyperparameter {self.name!r}: {value} is above the "
                                  f"maximum {self.maximum:g}")
        return value


def parse_hyperparameters(
    raw: Mapping[str, str] | None, declared: Mapping[str, Hyperparameter]
) -> dict[str, Value]:
    """Every declared hyperparameter, from `raw` or its default; unknown keys are errors."""
    raw = raw or {}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise InvalidSpecError(f"unknown hyperparameter {unknown[0]!r}; this recipe accepts: "
                          f"{', '.join(sorted(declared))}")
    return {name: hp.parse(raw[name]) if name in raw else hp.default
            for name, hp in declared.items()}


def as_strings(values: Mapping[str, Value]) -> dict[str, str]:
    """The values used, as recorded in lineage (strings, like the spec)."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
