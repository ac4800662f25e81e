#!/usr/bin/env python3
"""Build the Lambda deployment package: python3.12 x86_64, precompiled, under 250 MB.

    python3 infra/build_package.py --out build/package [--measure-import]

`sam build` runs this through infra/Makefile. Standard library only, so any
Python >= 3.11 with pip can run it. Steps:
1. the runtime dependencies of pyproject.toml, as wheels for CPython 3.12 on
   manylinux x86_64 (pip --platform; no compiler, no Docker);
2. the function's own code: limiter/ and processor/;
3. every module compiled to bytecode by a CPython 3.12 with
   `--invalidation-mode unchecked-hash`. Lambda unpacks packages without
   bytecode and /var/task is read-only, so without this every cold start
   compiles the Genesys SDK's ~6,700 modules again (about 10 s of a 10 s
   init phase). Unchecked-hash files are used without comparing them with
   the source, so the files' times after unzipping do not matter;
4. checks: every module has its bytecode, and the package is under Lambda's
   250 MB unzipped limit. It prints the figures.

`--measure-import` then imports the handler with CPython 3.12 twice, from the
bytecode and from source only, and prints both times.

Exit codes: 0 built, 1 a check failed or a tool failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("limiter", "processor")
RUNTIME = "3.12"
PLATFORM = "manylinux2014_x86_64"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # bytes, function and layers together
HANDLER_MODULE = "processor.handler"


class BuildError(Exception):
    """A step failed; the message says which and what to do."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_package.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--out", required=True, help="output directory (emptied first)")
    parser.add_argument(
        "--python",
        help=f"a CPython {RUNTIME} to compile with (default: python{RUNTIME} on PATH or pyenv's)",
    )
    parser.add_argument(
        "--measure-import",
        action="store_true",
        help="time importing the handler from the package, with and without its bytecode",
    )
    args = parser.parse_args(argv)
    try:
        out = Path(args.out).resolve()
        python = find_python(args.python)
        build(out, python)
        summary = check(out)
        print(summary)
        if args.measure_import:
            print(measure_import(out, python))
    except BuildError as exc:
        print(f"build_package: {exc}", file=sys.stderr)
        return 1
    return 0


def find_python(explicit: str | None) -> str:
    """A CPython RUNTIME interpreter: bytecode is version-specific."""
    candidates = [explicit] if explicit else []
    candidates.append(shutil.which(f"python{RUNTIME}") or "")
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/{RUNTIME}.*/bin/python{RUNTIME}"))
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if version == RUNTIME:
            return candidate
        if explicit:
            raise BuildError(f"--python {explicit} is Python {version}, not {RUNTIME}")
    raise BuildError(
        f"no CPython {RUNTIME} found (the function runs python{RUNTIME}, and bytecode is "
        f"version-specific): install it (pyenv install {RUNTIME}) or pass --python PATH"
    )


def runtime_dependencies() -> list[str]:
    """pyproject.toml's dependencies. boto3 stays: the runtime's copy may be older than ours."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def build(out: Path, python: str) -> None:
    for source in SOURCES:
        if not (ROOT / source / "__init__.py").is_file():
            raise BuildError(
                f"{ROOT / source} is missing: run this from the repository (for `sam build`, "
                "build in source: infra/samconfig.toml sets build_in_source = true)"
            )
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    step(
        "dependencies",
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(out),
            "--platform",
            PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            RUNTIME,
            "--only-binary=:all:",
            *runtime_dependencies(),
        ],
    )
    for source in SOURCES:
        shutil.copytree(
            ROOT / source, out / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    step(
        "bytecode",
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(out),
        ],
    )


def step(name: str, argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise BuildError(f"{name} failed (exit {result.returncode}):\n{tail}")


def check(out: Path) -> str:
    """Every module compiled for RUNTIME; the package under the unzipped limit."""
    tag = "cpython-" + RUNTIME.replace(".", "")
    missing = [
        str(py.relative_to(out))
        for py in out.rglob("*.py")
        if not (py.parent / "__pycache__" / f"{py.stem}.{tag}.pyc").is_file()
    ]
    if missing:
        raise BuildError(f"{len(missing)} modules have no {tag} bytecode, e.g. {missing[:3]}")
    sizes: dict[str, int] = {}
    files = 0
    for path in out.rglob("*"):
        if path.is_file():
            files += 1
            top = path.relative_to(out).parts[0]
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    total = sum(sizes.values())
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
    lines = [
        f"package: {out}",
        f"files: {files}, modules: {sum(1 for _ in out.rglob('*.py'))}, all with {tag} bytecode",
        f"unzipped: {total / 2**20:.1f} MiB of Lambda's {LAMBDA_UNZIPPED_LIMIT / 2**20:.0f} MiB",
        "largest: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in biggest),
    ]
    if total >= LAMBDA_UNZIPPED_LIMIT:
        raise BuildError("\n".join([*lines, "the package is over Lambda's unzipped limit"]))
    return "\n".join(lines)


def measure_import(out: Path, python: str) -> str:
    """Seconds to import the handler as Lambda's init would: from the package's bytecode,
    then with no bytecode (a cache prefix pointing at an empty directory)."""
    code = (
        "import time; t = time.perf_counter(); "
        f"import {HANDLER_MODULE}; print(time.perf_counter() - t)"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(out),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    times = {}
    with tempfile.TemporaryDirectory() as empty:
        for label, extra in (
            ("with bytecode", {}),
            ("source only", {"PYTHONPYCACHEPREFIX": empty}),
        ):
            result = subprocess.run(
                [python, "-s", "-c", code],
                capture_output=True,
                text=True,
                env={**env, **extra},
                cwd=out,
                check=False,
                timeout=300,
            )
            if result.returncode != 0:
                raise BuildError(f"importing {HANDLER_MODULE} failed:\n{result.stderr[-2000:]}")
            times[label] = float(result.stdout.strip().splitlines()[-1])
    return "import of the handler (cold, one process): " + ", ".join(
        f"{label} {seconds:.2f} s" for label, seconds in times.items()
    )


if __name__ == "__main__":
    sys.exit(main())
