"""The CLI as an operator's shell runs it: standard AWS settings and RATEBRIDGE_* variables."""

from __future__ import annotations

import pytest

from limiter import LimiterSettings
from ratebridge_tools.cli import main
from ratebridge_tools.servers import LocalServer


@pytest.fixture
def cli_env(
    backend: LocalServer, limiter_settings: LimiterSettings, monkeypatch: pytest.MonkeyPatch
) -> LimiterSettings:
    """The CLI reads the standard AWS settings and RATEBRIDGE_* like an operator's shell."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", backend.url)
    monkeypatch.setenv("RATEBRIDGE_BUCKETS_TABLE", limiter_settings.buckets_table)
    monkeypatch.setenv("RATEBRIDGE_LIMITS_TABLE", limiter_settings.limits_table)
    return limiter_settings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
