"""A Genesys stack for tests: settings pointing at the emulator and a local DynamoDB,
a per-test OAuth client and buckets, and worker code for other processes."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from limiter import Limiter
from processor.settings import Settings

TOKEN_SHAPED = re.compile(r"[A-Za-z0-9_\-.~+/=]{16,}")


def settings_from(env: Mapping[str, str]) -> Settings:
    return Settings.from_env(env)


def build_client(env: Mapping[str, str], **kwargs: Any) -> Any:
    """A GenesysClient on `env` (imports the SDK)."""
    from processor.genesys.client import GenesysClient

    settings = settings_from(env)
    return GenesysClient.from_settings(settings, **kwargs)


def build_limiter(env: Mapping[str, str]) -> Limiter:
    return Limiter.from_env(settings_from(env).limiter)


def find_leaks(texts: Iterable[str], secrets: Iterable[str], token_ids: Iterable[str]) -> list[str]:
    """Every secret, and every string whose token id is among `token_ids`, found in `texts`.

    Token values are never known to the tests directly (the emulator keeps
    only their ids, `tok-` + sha256 prefix), so every token-shaped substring
    is hashed and compared.
    """
    wanted = set(token_ids)
    leaks: list[str] = []
    for text in texts:
        for secret in secrets:
            if secret and secret in text:
                leaks.append(f"secret found: ...{text[max(0, text.index(secret) - 40) :][:80]}")
        for candidate in TOKEN_SHAPED.findall(text):
            for piece in {candidate, candidate.strip(".=+/"), *re.split(r"[./+=]", candidate)}:
                if len(piece) >= 16 and _token_id(piece) in wanted:
                    leaks.append(f"token {_token_id(piece)} found in output")
    return leaks


def _token_id(value: str) -> str:
    return "tok-" + hashlib.sha256(value.encode()).hexdigest()[:8]


@dataclass
class PhaseResult:
    ok: int = 0
    errors: list[str] = field(default_factory=list)


def _worker_logging() -> None:
    """Child processes log like a Lambda would (INFO, ours at DEBUG) to stderr,
    which the tests capture and scan for secrets."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
    logging.getLogger("processor").setLevel(logging.DEBUG)
    logging.getLogger("limiter").setLevel(logging.DEBUG)


def call_in_phases(
    env: Mapping[str, str], threads: int, offsets: list[float], user_id: str, barrier: Any
) -> list[PhaseResult]:
    """In a fresh process: build a client (the slow SDK import), meet the other
    processes at `barrier`, then have `threads` callers each make one GET /users
    call at every offset (seconds after the meeting), all together."""
    _worker_logging()
    client = build_client(env, max_connections=threads)
    barrier.wait()
    go = time.time()
    results = []
    for offset in offsets:
        result = PhaseResult()
        lock = threading.Lock()

        def work(result: PhaseResult = result, lock: threading.Lock = lock) -> None:
            try:
                with client.deadline(time.time() + 30):
                    client.get_user(user_id)
                with lock:
                    result.ok += 1
            except Exception as exc:  # noqa: BLE001 - reported to the test
                with lock:
                    result.errors.append(f"{type(exc).__name__}: {exc}")

        time.sleep(max(0.0, go + offset - time.time()))
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        results.append(result)
    return results


def call_until(
    env: Mapping[str, str], threads: int, seconds: float, user_id: str, barrier: Any
) -> PhaseResult:
    """In a fresh process: build a client, meet the other processes at `barrier`,
    then `threads` callers call GET /users back to back for `seconds`; a call whose
    permission would only come after that ends its caller."""
    from processor.genesys.errors import PermissionTimeout

    _worker_logging()
    client = build_client(env, max_connections=threads)
    barrier.wait()
    end = time.time() + seconds
    result = PhaseResult()
    lock = threading.Lock()

    def work() -> None:
        while time.time() < end:
            try:
                with client.deadline(min(end, time.time() + 30)):
                    client.get_user(user_id)
                with lock:
                    result.ok += 1
            except PermissionTimeout as exc:
                if time.time() + (exc.retry_after or 0) + 1 >= end:
                    return  # its turn would come after the run: the natural end
                with lock:
                    result.errors.append(f"PermissionTimeout: {exc}")
            except Exception as exc:  # noqa: BLE001 - reported to the test
                with lock:
                    result.errors.append("".join(traceback.format_exception_only(exc)).strip())

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return result
