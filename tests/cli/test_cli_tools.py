"""`ratebridge status|demo|simulate|infra` through main(): what they show, and bad input.

(`limits` and `tables` are in test_cli_limits.py; the demo's whole run is in
tests/e2e/test_demo.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limiter import Limiter, LimiterSettings
from ratebridge_tools.cli import main
from tests.cli.conftest import run
from tests.conftest import MakeLimiter


def test_status_shows_grants_per_second_utilization_blocks_and_waiters(
    cli_env: LimiterSettings,
    make_limiter: MakeLimiter,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a bucket blocked by an upstream 429 and one that grants
    lim: Limiter = make_limiter()
    lim.set_limit(bucket, requests=100, per_seconds=1)
    lim.set_limit(f"{bucket}-b", requests=60, per_seconds=60)
    lim.block(f"{bucket}-b", 300)
    # When the status is read as JSON, one view
    code, out, _ = run(capsys, "status", bucket, f"{bucket}-b", "--json", "--interval", "0.2")
    # Then each bucket is there with its limit, rate, block and waiters
    assert code == 0
    rows = {r["bucket"]: r for r in json.loads(out)}
    assert rows[bucket]["limit"] == "100 per 1s (burst 1)"
    assert rows[bucket]["limit_per_second"] == pytest.approx(99.0, abs=0.1)
    assert rows[bucket]["grants_per_second"] == 0
    assert rows[bucket]["utilization"] == 0
    assert rows[bucket]["blocked_for_seconds"] == 0
    assert 295 < rows[f"{bucket}-b"]["blocked_for_seconds"] <= 300
    assert rows[f"{bucket}-b"]["waiting"] == 0


def test_status_rates_count_the_grants_between_two_readings(
    cli_env: LimiterSettings,
    make_limiter: MakeLimiter,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ratebridge_tools import status

    lim: Limiter = make_limiter()
    lim.set_limit(bucket, requests=1000, per_seconds=1, burst=100)
    before = status.read(lim, [bucket])
    for _ in range(50):
        lim.acquire(bucket, timeout=0)
    after = status.read(lim, [bucket])
    [row] = status.rows(before, after)
    elapsed = after[bucket].now - before[bucket].now
    assert row.grants_per_second == pytest.approx(50 / elapsed)
    assert "grants/s" in status.render([row], after[bucket].now)


def test_status_watch_refreshes_the_view(
    cli_env: LimiterSettings,
    make_limiter: MakeLimiter,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_limiter().set_limit(bucket, requests=10, per_seconds=1)
    code, out, _ = run(capsys, "status", bucket, "--watch", "--frames", "3", "--interval", "0.1")
    assert code == 0
    assert out.count("| bucket") == 3  # three views, each a table
    assert out.count(bucket) >= 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--interval", "0"], "--interval must be within"),
        (["status", "--interval", "nan"], "--interval must be within"),
        (["status", "--watch", "--frames", "0"], "--frames must be at least 1"),
        (["status", "no such bucket"], "may only contain printable ASCII"),
    ],
)
def test_status_bad_input(
    cli_env: LimiterSettings, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_status_of_an_unknown_bucket_says_how_to_set_it(
    cli_env: LimiterSettings, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status", bucket)
    assert code == 1
    assert "ratebridge limits set" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--limit", "100"], "expected REQUESTS/SECONDS[/BURST]"),
        (["demo", "--limit", "0/10"], "requests must be between 1"),
        (["demo", "--limit", "10/10/11"], "burst (11) must not exceed requests (10)"),
        (["demo", "--limit", "10/nan"], "per_seconds must be finite"),
        (["demo", "--events", "-5"], "events must be within"),
        (["demo", "--events", "many"], "expected a whole number"),
        (["demo", "--workers", "0"], "workers must be within"),
        (["demo", "--batch-size", "0"], "batch size must be within"),
        (["demo", "--strategy", "yolo"], "invalid choice: 'yolo'"),
        (["simulate", "--malformed", "1.5"], "expected a share in [0, 1)"),
        (["simulate", "--duplicates", "0.6", "--malformed", "0.5"], "must leave room"),
        (["simulate", "--function-timeout", "0"], "function timeout must be within"),
        (["simulate", "--max-seconds", "-1"], "max_seconds must be within"),
        (["chaos", "--scenario", "meteor"], "invalid choice: 'meteor'"),
        (["chaos", "--events", "0"], "events must be at least 1, got 0"),
        (["chaos", "--workers", "-3"], "workers must be within 1..1000, got -3"),
        (["chaos", "--events", "many"], "expected a whole number, got 'many'"),
        (["chaos", "--workers", "5000"], "workers must be within 1..1000, got 5000"),
    ],
)
def test_demo_simulate_and_chaos_refuse_bad_knobs_before_starting_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's own refusals exit 2
        code = main(argv)
        raise SystemExit(code)
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert message in err


def test_infra_check_names_a_missing_template(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "infra", "check", "--template", "no/such/template.yaml")
    assert code == 2
    assert "no template at no/such/template.yaml" in err


def test_chaos_lists_its_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    from ratebridge_tools.chaos import SCENARIOS

    code, out, _ = run(capsys, "chaos", "--list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [s.name for s in SCENARIOS]


def test_chaos_runs_a_scenario_and_writes_its_figures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # When one scenario runs on a tiny load, without the skew run
    out_file = tmp_path / "chaos.json"
    code, out, _ = run(
        capsys,
        "chaos",
        "--scenario",
        "token-revoked",
        "--events",
        "20",
        "--workers",
        "2",
        "--no-skew",
        "--json",
        str(out_file),
    )
    # Then it passed, the table shows it, and the JSON has its figures
    assert code == 0, out
    assert "every promise held" in out
    assert "| token-revoked |" in out
    data = json.loads(out_file.read_text())
    [row] = data["scenarios"]
    assert row["scenario"] == "token-revoked"
    assert row["ok"] is True
    assert (row["events"], row["lost"], row["doubled"]) == (20, 0, 0)
    assert row["fault_hits"] > 0  # the revoked token was refused at least once
    assert data["skew"] is None
