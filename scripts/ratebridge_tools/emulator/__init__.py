"""A local Genesys Cloud API emulator: OAuth client credentials, users,
conversations and queues, Genesys-exact 429s per token, fault injection and a
record of every request. Standard library only; see README.md.

Imports go one way: nothing here imports `limiter` or `processor`.
"""

from ratebridge_tools.emulator.config import (
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    ConfigError,
    EmulatorConfig,
)
from ratebridge_tools.emulator.launch import (
    EmulatorAdmin,
    EmulatorAdminError,
    EmulatorServer,
    ThreadedEmulator,
    serve_in_thread,
    start_emulator,
)
from ratebridge_tools.emulator.state import EmulatorStats, RequestRecord, token_id_of

__all__ = [
    "LOCAL_CLIENT_ID",
    "LOCAL_CLIENT_SECRET",
    "ConfigError",
    "EmulatorAdmin",
    "EmulatorAdminError",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorStats",
    "RequestRecord",
    "ThreadedEmulator",
    "serve_in_thread",
    "start_emulator",
    "token_id_of",
]
