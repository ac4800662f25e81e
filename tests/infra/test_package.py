"""The deployment package: built for python3.12 x86_64, precompiled, under Lambda's limit.

The build downloads the runtime dependencies as wheels from PyPI (the one
registry this machine reaches) and compiles them with a CPython 3.12.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "infra" / "build_package.py"


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_package", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_is_precompiled_and_under_250_mb(tmp_path: Path) -> None:
    # When the package is built as `sam build` builds it
    out = tmp_path / "package"
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Then every module has its 3.12 bytecode, checked without the source (unchecked-hash)
    assert "all with cpython-312 bytecode" in result.stdout
    pyc = out / "processor" / "__pycache__" / "handler.cpython-312.pyc"
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b01, "a hash-based pyc whose hash is not checked"
    # and the whole package fits Lambda's 250 MB unzipped, with the function's code in it
    size = float(re.search(r"unzipped: ([\d.]+) MiB", result.stdout).group(1))  # type: ignore[union-attr]
    assert 0 < size < 250
    assert (out / "processor" / "handler.py").is_file()
    assert (out / "limiter" / "gcra.py").is_file()
    assert (out / "PureCloudPlatformClientV2").is_dir()
    assert not list(out.glob("tests")), "tests are not shipped"


def test_a_module_without_bytecode_fails_the_build(tmp_path: Path) -> None:
    build = load_build()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    with pytest.raises(build.BuildError, match="1 modules have no cpython-312 bytecode"):
        build.check(tmp_path)


def test_a_package_over_the_limit_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = load_build()
    (tmp_path / "data.bin").write_bytes(b"x" * 2048)
    monkeypatch.setattr(build, "LAMBDA_UNZIPPED_LIMIT", 1024)
    with pytest.raises(build.BuildError, match="over Lambda's unzipped limit"):
        build.check(tmp_path)


def test_a_wrong_python_is_refused_with_what_to_do(tmp_path: Path) -> None:
    build = load_build()
    old_python = tmp_path / "python3.10"
    old_python.write_text("#!/bin/sh\necho 3.10\n")
    old_python.chmod(0o755)
    with pytest.raises(build.BuildError, match=r"is Python 3\.10, not 3\.12"):
        build.find_python(str(old_python))
