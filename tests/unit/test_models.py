"""Validation of everything a caller can pass in: clear errors, nothing else."""

from __future__ import annotations

import math

import pytest

from limiter import InvalidArgument, Limit, LimiterSettings
from limiter.models import validate_bucket


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests": 0, "per_seconds": 60}, "requests must be between 1"),
        ({"requests": -5, "per_seconds": 60}, "requests must be between 1"),
        ({"requests": 10**9, "per_seconds": 60}, "requests must be between 1"),
        ({"requests": 1.5, "per_seconds": 60}, "requests must be a whole number"),
        ({"requests": True, "per_seconds": 60}, "requests must be a whole number"),
        ({"requests": "300", "per_seconds": 60}, "requests must be a whole number"),
        ({"requests": 300, "per_seconds": 0}, "per_seconds must be between"),
        ({"requests": 300, "per_seconds": -1}, "per_seconds must be between"),
        ({"requests": 300, "per_seconds": math.nan}, "per_seconds must be finite"),
        ({"requests": 300, "per_seconds": math.inf}, "per_seconds must be finite"),
        ({"requests": 300, "per_seconds": 1e12}, "per_seconds must be between"),
        ({"requests": 300, "per_seconds": "60"}, "per_seconds must be a number"),
        ({"requests": 300, "per_seconds": None}, "per_seconds must be a number"),
        ({"requests": 3, "per_seconds": 60, "burst": 4}, "burst (4) must not exceed requests (3)"),
        ({"requests": 3, "per_seconds": 60, "burst": 0}, "burst must be between 1"),
    ],
)
def test_invalid_limits_are_value_errors_with_a_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        Limit(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidArgument)
    assert message in str(caught.value)


def test_limit_accepts_the_documented_range() -> None:
    assert Limit(1, 60).rate.interval_us == 60_600_001  # 1/min: T just above 60.6 s
    assert Limit(500, 1, 5).rate.per_second > 0.98 * 500
    assert Limit(requests=300, per_seconds=60, burst=3).per_seconds == 60.0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("x" * 201, "the maximum is 200"),
        ("has space", "printable ASCII without spaces"),
        ("tab\there", "printable ASCII without spaces"),
        ("ünicode", "printable ASCII without spaces"),
        (None, "must be a string"),
        (42, "must be a string"),
    ],
)
def test_invalid_bucket_names(name: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_bucket(name)


@pytest.mark.parametrize("name", ["genesys", "genesys:GET:/api/v2/users/{id}", "a/b#c", "x" * 200])
def test_bucket_names_with_separators_are_accepted(name: str) -> None:
    assert validate_bucket(name) == name


def test_settings_defaults_and_overrides() -> None:
    assert LimiterSettings.from_env({}) == LimiterSettings(
        "ratebridge-buckets", "ratebridge-limits", None
    )
    env = {"RATEBRIDGE_BUCKETS_TABLE": "b-t", "AWS_REGION": "eu-west-1"}
    assert LimiterSettings.from_env(env) == LimiterSettings("b-t", "ratebridge-limits", "eu-west-1")
    with pytest.raises(InvalidArgument, match="RATEBRIDGE_LIMITS_TABLE='x'"):
        LimiterSettings.from_env({"RATEBRIDGE_LIMITS_TABLE": "x"})
