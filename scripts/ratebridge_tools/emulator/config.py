"""The emulator's knobs: one frozen dataclass, validated, settable from JSON and flags.

`KNOBS` describes every field once (kind, bounds, help); the dataclass, the
admin API (`POST /_emulator/config`), the command-line flags and the README all
follow it, so a knob cannot be valid in one place and rejected in another.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Literal

# Placeholders for local use only (the demo and the tests use them). They are
# not secrets: nothing real accepts them.
LOCAL_CLIENT_ID = "ratebridge-local"
LOCAL_CLIENT_SECRET = "ratebridge-local-secret"  # noqa: S105 - local placeholder

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

WindowMode = Literal["fixed", "sliding"]
LimitScope = Literal["token", "client"]
HangAction = Literal["504", "close"]
KnobKind = Literal["int", "float", "choice", "bool", "ids", "clients"]


class ConfigError(ValueError):
    """A knob has an unknown name or an invalid value; nothing was changed."""


def is_uuid(value: str) -> bool:
    """True when `value` is a UUID in the 8-4-4-4-12 hex form Genesys uses for ids."""
    return _UUID.fullmatch(value) is not None


def _shown(value: object) -> str:
    """A short, safe description of a rejected value for an error message."""
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Knob:
    """How one knob is validated and documented."""

    kind: KnobKind
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: object) -> object:
        """The normalized value, or ConfigError saying what `name` accepts."""
        checker = {
            "int": self._int,
            "float": self._float,
            "choice": self._choice,
            "bool": self._bool,
            "ids": self._ids,
            "clients": self._clients,
        }[self.kind]
        return checker(name, value)

    def _range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f" between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {self.low:g}"
        return ""

    def _in_range(self, number: float) -> bool:
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        return self.high is None or number <= self.high

    def _int(self, name: str, value: object) -> int:
        # bool is an int in Python; `true` is never a sensible count.
        if isinstance(value, bool) or not isinstance(value, int) or not self._in_range(value):
            raise ConfigError(
                f"{name} must be an integer{self._range_text()} (got {_shown(value)})"
            )
        return value

    def _float(self, name: str, value: object) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not self._in_range(value)
        ):
            raise ConfigError(f"{name} must be a number{self._range_text()} (got {_shown(value)})")
        return float(value)

    def _choice(self, name: str, value: object) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigError(f"{name} must be one of {list(self.choices)} (got {_shown(value)})")
        return value

    def _bool(self, name: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false (got {_shown(value)})")
        return value

    def _ids(self, name: str, value: object) -> frozenset[str]:
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise ConfigError(f"{name} must be a list of UUIDs (got {_shown(value)})")
        ids: set[str] = set()
        for item in value:
            if not isinstance(item, str) or not is_uuid(item):
                raise ConfigError(f"{name} must contain only UUIDs (got {_shown(item)})")
            ids.add(item.lower())
        return frozenset(ids)

    def _clients(self, name: str, value: object) -> Mapping[str, str]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be an object of client id -> secret")
        clients: dict[str, str] = {}
        for client_id, secret in value.items():
            # Basic auth splits id:secret at the first colon, so an id cannot hold one.
            if not isinstance(client_id, str) or not client_id or ":" in client_id:
                raise ConfigError(f"{name}: a client id must be a non-empty string without ':'")
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"{name}: the secret of {client_id!r} must be a non-empty string")
            clients[client_id] = secret
        return MappingProxyType(clients)


KNOBS: dict[str, Knob] = {
    "clients": Knob(
        "clients",
        "OAuth clients accepted by /oauth/token, as {client_id: secret}; write-only "
        "(GET /_emulator/config shows client_ids)",
    ),
    "token_lifetime_s": Knob(
        "float",
        "access token lifetime in seconds; expires_in is its whole part",
        low=0,
        low_open=True,
    ),
    "token_rate_limit": Knob("int", "token requests admitted per OAuth client per window", low=1),
    "token_rate_period_s": Knob(
        "float", "length of the token endpoint's rate window in seconds", low=0, low_open=True
    ),
    "token_endpoint_down": Knob("bool", "when true, POST /oauth/token answers 503"),
    "rate_limit": Knob(
        "int", "API requests admitted per window, per access token or client (limit_scope)", low=1
    ),
    "rate_period_s": Knob(
        "float", "length of the API rate window in seconds", low=0, low_open=True
    ),
    "limit_scope": Knob(
        "choice",
        "whose window the API limit counts: token (each access token its own, as "
        "Genesys's token.rate.per.minute) or client (all tokens of one OAuth client share one)",
        choices=("token", "client"),
    ),
    "window_mode": Knob(
        "choice",
        "fixed: epoch-aligned windows [k*period, (k+1)*period); "
        "sliding: every window (t - period, t]",
        choices=("fixed", "sliding"),
    ),
    "latency_ms": Knob("float", "delay added before every non-admin response, in ms", low=0),
    "jitter_ms": Knob("float", "extra uniform random delay in [0, jitter_ms) ms", low=0),
    "error_rate": Knob(
        "float", "probability that an admitted API request answers error_status", low=0, high=1
    ),
    "error_status": Knob("int", "status of injected errors", low=500, high=599),
    "hang_rate": Knob(
        "float", "probability that an admitted API request hangs for hang_s", low=0, high=1
    ),
    "hang_s": Knob("float", "how long a hanging request hangs, in seconds", low=0),
    "hang_action": Knob(
        "choice",
        "after a hang: 504 (answer a Genesys 504 request.timeout) or close "
        "(close the connection without answering)",
        choices=("504", "close"),
    ),
    "storm_retry_after_s": Knob(
        "int",
        "when > 0, every API request answers 429 with this Retry-After (a limit the "
        "client does not own, e.g. the org's, spent by another integration); 0: off",
        low=0,
        high=86_400,
    ),
    "missing_ids": Knob("ids", "entity ids that answer 404 not.found (simulate deleted ones)"),
    "seed": Knob("int", "seed of the fault-injection random generator (re-seeds when set)"),
    "max_records": Knob("int", "request records kept in memory (oldest dropped first)", low=1),
}


def _default_clients() -> Mapping[str, str]:
    return MappingProxyType({LOCAL_CLIENT_ID: LOCAL_CLIENT_SECRET})


@dataclass(frozen=True)
class EmulatorConfig:
    """Every knob of the emulator, validated on construction (see `KNOBS`).

    Raises ConfigError when a value is out of range or of the wrong type.
    """

    clients: Mapping[str, str] = field(default_factory=_default_clients, repr=False)
    token_lifetime_s: float = 86399.0
    token_rate_limit: int = 60
    token_rate_period_s: float = 60.0
    token_endpoint_down: bool = False
    rate_limit: int = 300
    rate_period_s: float = 60.0
    limit_scope: LimitScope = "token"
    window_mode: WindowMode = "sliding"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    hang_rate: float = 0.0
    hang_s: float = 30.0
    hang_action: HangAction = "504"
    storm_retry_after_s: int = 0
    missing_ids: frozenset[str] = frozenset()
    seed: int = 0
    max_records: int = 1_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            # frozen: normalizing (int -> float, ids -> lower case) needs object.__setattr__
            object.__setattr__(self, f.name, KNOBS[f.name].check(f.name, getattr(self, f.name)))

    def with_changes(self, changes: Mapping[str, object]) -> EmulatorConfig:
        """A copy with `changes` applied (a partial update).

        Raises ConfigError on an unknown knob or an invalid value; `self` is
        never modified.
        """
        unknown = sorted(str(name) for name in changes if name not in KNOBS)
        if unknown:
            shown = ", ".join(_shown(name) for name in unknown[:5])
            raise ConfigError(f"unknown knob(s) {shown}; known knobs: {', '.join(KNOBS)}")
        return replace(self, **changes)  # type: ignore[arg-type]  # validated by __post_init__

    @classmethod
    def from_json(cls, data: object) -> EmulatorConfig:
        """A config from a JSON object of knobs (missing knobs keep their defaults).

        Raises ConfigError when `data` is not an object or a knob is invalid.
        """
        if not isinstance(data, Mapping):
            raise ConfigError("the configuration must be a JSON object of knobs")
        return cls().with_changes(data)

    def to_json(self, *, include_secrets: bool = False) -> dict[str, object]:
        """The knobs as JSON values. Client secrets only with include_secrets
        (used to hand a config to a child process, never to answer the admin API)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "clients":
                if include_secrets:
                    out["clients"] = dict(value)
                else:
                    out["client_ids"] = sorted(value)
            elif f.name == "missing_ids":
                out["missing_ids"] = sorted(value)
            else:
                out[f.name] = value
        return out
