"""`ratebridge bench genesys`, tiny: every task is accounted for and ratebridge's claims hold.

Timing-dependent figures (rates, 429 counts, drain times) are what the
benchmark is for and are not asserted here; only what must hold on any
machine: every task settled, ratebridge's one token and its window bound,
the documented JSON keys.
"""

from __future__ import annotations

import json

import pytest

from ratebridge_tools.bench import genesys as bench
from ratebridge_tools.cli import main
from ratebridge_tools.servers import LocalServer

TINY = bench.BenchConfig(
    concurrency=(4,), backlog=20, requests=10, per_seconds=2.0, cell_timeout=60.0
)


def test_both_strategies_drain_a_tiny_backlog(backend: LocalServer) -> None:
    # Given a backlog of 20 tasks, 4 workers and a limit of 10 per 2 s
    progress: list[str] = []
    # When both strategies drain it on the same emulator settings
    cells = bench.run_on(TINY, backend.url, progress.append)
    # Then every task is done or failed for good, within the cell's time
    data = json.loads(bench.to_json(TINY, cells))
    results = {result["strategy"]: result for result in data["results"]}
    assert list(results) == ["seed", "ratebridge"]
    for result in results.values():
        assert result["done"] + result["failed"] == TINY.backlog, result
        assert result["unfinished"] == 0
        assert result["drained"] is True
        assert result["stuck_workers"] == 0
        assert result["max_in_window"] <= TINY.requests
    # and the ratebridge fleet used one token and stayed within the limit
    ratebridge = results["ratebridge"]
    assert ratebridge["token_requests"] == 1
    assert ratebridge["max_window_over_limit"] <= 1.0
    # while each seed container logged in on its own (at most once each here)
    assert 1 <= results["seed"]["token_requests"] <= 4
    # and the outputs have the documented shape
    assert set(data) == {"config", "results"}
    assert data["config"]["backlog"] == TINY.backlog
    assert data["config"]["burst"] == 1
    for result in data["results"]:
        assert tuple(result) == bench.RESULT_KEYS
    lines = bench.table(cells).splitlines()
    assert len(lines) == 2 + len(cells)
    assert lines[0].startswith("| strategy")
    assert any("drained" in line for line in progress)


def test_a_cell_that_runs_out_of_time_ends_and_is_reported(backend: LocalServer) -> None:
    # Given a cell timeout shorter than the limit allows: 20 tasks at 10 per 2 s
    # cannot all be done within 1.5 s
    config = bench.BenchConfig(
        concurrency=(4,),
        backlog=20,
        requests=10,
        per_seconds=2.0,
        strategies=("seed",),
        cell_timeout=1.5,
    )
    # When the seed runs (its workers sleep on Retry-After when the time runs out)
    (cell,) = bench.run_on(config, backend.url, lambda line: None)
    # Then the cell ends, its sleepers woken, and says what it left unfinished
    assert cell.drained is False
    assert cell.stuck_workers == 0
    assert cell.unfinished > 0
    assert cell.done + cell.failed + cell.unfinished == config.backlog
    assert "> " in bench.table([cell])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backlog", "0"], "the backlog must hold at least 1 task"),
        (["--strategies", "seed,nope"], "strategies must be distinct names"),
        (["--strategies", "seed,seed"], "strategies must be distinct names"),
        (["--per", "0"], "per_seconds"),
        (["--cell-timeout", "-1"], "the cell timeout must be a positive number"),
        (["--concurrency", "16,1000"], "concurrency must be whole numbers from 1 to 512"),
        (["--json", "/nonexistent-dir/out.json"], "no directory for --json"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "genesys", *argv])
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert "starting" not in err


def test_a_malformed_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "genesys", "--concurrency", "16,x"])
    assert exited.value.code == 2
    assert "expected numbers like 1,16,64" in capsys.readouterr().err
