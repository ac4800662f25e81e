"""Fixtures for the emulator tests: one emulator child process per session,
reset (records, tokens, windows and knobs) before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ratebridge_tools.emulator import EmulatorServer, start_emulator


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorServer]:
    """The emulator as a child process on 127.0.0.1, with its access log on
    (so the tests can check that no secret or token ever reaches it)."""
    server = start_emulator(access_log=True)
    yield server
    server.stop()


@pytest.fixture
def emu(emulator_process: EmulatorServer) -> EmulatorServer:
    """The session's emulator, as good as new: default knobs, nothing recorded."""
    emulator_process.reset(config=True)
    return emulator_process
