"""Resource quantities compare by value, as the API server stores them canonically."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelship.adapters.kube import contains
from modelship.core.quantities import parse_quantity, same_quantity


@pytest.mark.parametrize(("text", "value"), [
    (1, Decimal(1)), ("1", Decimal(1)), ("1000m", Decimal(1)), ("500m", Decimal("0.5")),
    (0.5, Decimal("0.5")), ("2Gi", Decimal(2 * 2**30)), ("2048Mi", Decimal(2 * 2**30)),
    ("1k", Decimal(1000)), ("1E", Decimal(10) ** 18), ("1e3", Decimal(1000)),
    ("1.5", Decimal("1.5")),
])
def test_parse(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Qi", "Gi", True, None, "1 Gi"])
def test_not_a_quantity(text: object) -> None:
    assert parse_quantity(text) is None


def test_same_quantity() -> None:
    assert same_quantity(1, "1") and same_quantity("1000m", "1")
    assert not same_quantity("1", "2") and not same_quantity("x", "x")


def test_contains_compares_requests_and_limits_by_value() -> None:
    actual = {"resources": {"limits": {"nvidia.com/gpu": "1", "memory": "2Gi"},
                            "requests": {"cpu": "1"}}}
    assert contains(actual, {"resources": {"limits": {"nvidia.com/gpu": 1,
                                                      "memory": "2048Mi"},
                                           "requests": {"cpu": "1000m"}}})
    assert not contains(actual, {"resources": {"limits": {"nvidia.com/gpu": 2}}})


def test_contains_compares_other_fields_exactly() -> None:
    # Outside requests/limits, 1 and "1" are different values (a label, an env var).
    assert not contains({"labels": {"v": "1"}}, {"labels": {"v": 1}})
    assert not contains({"env": [{"value": "1000m"}]}, {"env": [{"value": "1"}]})
