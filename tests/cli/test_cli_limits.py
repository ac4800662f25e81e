"""`ratebridge tables|limits ...` end to end, through main(), on every backend."""

from __future__ import annotations

import json
import uuid

import pytest

from limiter import LimiterSettings
from ratebridge_tools.cli import main
from ratebridge_tools.servers import LocalServer, free_port
from tests.cli.conftest import run


def test_tables_create_is_idempotent(
    cli_env: LimiterSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        code, out, _ = run(capsys, "tables", "create")
        assert code == 0
        assert cli_env.buckets_table in out


def test_limits_set_get_list_delete(
    cli_env: LimiterSettings, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "limits", "set", bucket, "--requests", "300", "--per", "60", "--burst", "3"
    )
    assert (code, out.strip()) == (
        0,
        f"{bucket}: 300 per 60s (burst 3) (takes effect on every caller's next acquire)",
    )
    code, out, _ = run(capsys, "limits", "get", bucket, "--json")
    assert code == 0
    assert json.loads(out) == {"bucket": bucket, "requests": 300, "per_seconds": 60.0, "burst": 3}
    code, out, _ = run(capsys, "limits", "list", "--json")
    assert {
        "bucket": bucket,
        "requests": 300,
        "per_seconds": 60.0,
        "burst": 3,
        "version": 1,
    } in json.loads(out)
    code, out, _ = run(capsys, "limits", "delete", bucket)
    assert code == 0
    code, _, err = run(capsys, "limits", "get", bucket)
    assert code == 1
    assert f"no limit is configured for bucket '{bucket}'" in err
    code, _, err = run(capsys, "limits", "delete", bucket)
    assert (code, err.strip()) == (1, f"{bucket}: no such limit")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--requests", "0", "--per", "60"], "requests must be between 1"),
        (["--requests", "-3", "--per", "60"], "requests must be between 1"),
        (["--requests", "300", "--per", "nan"], "per_seconds must be finite"),
        (["--requests", "300", "--per", "inf"], "per_seconds must be finite"),
        (["--requests", "300", "--per", "0"], "per_seconds must be between"),
        (["--requests", "300", "--per", "1e300"], "per_seconds must be between"),
        (["--requests", "99999999999", "--per", "60"], "requests must be between 1"),
        (
            ["--requests", "3", "--per", "60", "--burst", "4"],
            "burst (4) must not exceed requests (3)",
        ),
    ],
)
def test_limits_set_rejects_bad_numbers_and_writes_nothing(
    cli_env: LimiterSettings,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, _, err = run(capsys, "limits", "set", bucket, *argv)
    assert code == 2
    assert message in err
    code, _, _ = run(capsys, "limits", "get", bucket)
    assert code == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["limits", "set", "b", "--requests", "abc", "--per", "60"],
            "expected a whole number, got 'abc'",
        ),
        (["limits", "set", "b", "--requests", "3"], "the following arguments are required: --per"),
        (
            ["limits", "set", "b", "--requests", "3", "--per", "soon"],
            "expected a number, got 'soon'",
        ),
        (["limits"], "the following arguments are required: ACTION"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"),
    [("has space", "printable ASCII without spaces"), ("x" * 201, "the maximum is 200")],
)
def test_bad_bucket_names(
    cli_env: LimiterSettings, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    code, _, err = run(capsys, "limits", "set", name, "--requests", "1", "--per", "1")
    assert code == 2
    assert message in err


def test_bucket_names_with_separators_round_trip(
    cli_env: LimiterSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"genesys:GET:/api/v2/users/{{id}}#{uuid.uuid4().hex[:6]}"
    assert run(capsys, "limits", "set", name, "--requests", "100", "--per", "60")[0] == 0
    code, out, _ = run(capsys, "limits", "get", name, "--json")
    assert code == 0
    assert json.loads(out)["bucket"] == name


def test_missing_table_says_how_to_create_it(
    backend: LocalServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", backend.url)
    monkeypatch.setenv("RATEBRIDGE_LIMITS_TABLE", "no-such-table-here")
    code, _, err = run(capsys, "limits", "list")
    assert code == 1
    assert "table missing" in err
    assert "ratebridge tables create" in err


def test_unreachable_endpoint_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    code, _, err = run(capsys, "limits", "list")
    assert code == 1
    assert dead in err


def test_missing_credentials_say_so(
    backend: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", backend.url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path) + "/none")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path) + "/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = run(capsys, "limits", "list")
    assert code == 1
    assert "no AWS credentials found" in err
