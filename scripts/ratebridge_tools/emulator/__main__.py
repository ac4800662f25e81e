"""Run the Genesys emulator: `python -m ratebridge_tools.emulator --port N [flags]`.

Knobs come from `--config FILE` (a JSON object; `-` reads stdin, which is how
`launch.start_emulator` hands over client secrets without a command line or a
file showing them), then from the flags, which win. With `--port 0` a free port
is chosen; either way the first line on stdout is

    ratebridge emulator listening on http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from ratebridge_tools.emulator.config import KNOBS, ConfigError, EmulatorConfig
from ratebridge_tools.emulator.server import EmulatorHTTPServer
from ratebridge_tools.emulator.state import EmulatorState

LISTENING = "ratebridge emulator listening on {url}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, not {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    """The command line: --port, --config, --access-log and one flag per knob."""
    parser = argparse.ArgumentParser(
        prog="ratebridge emulator",
        description="A local Genesys Cloud API emulator (OAuth, users, conversations, "
        "queues, Genesys-exact 429s, fault injection, a request record).",
    )
    parser.add_argument("--port", type=_port, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--config", metavar="FILE", help="JSON object of knobs; '-' reads stdin")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="one line per request on stderr (token ids, never tokens)",
    )
    knobs = parser.add_argument_group("knobs (see README.md; flags override --config)")
    for name, knob in KNOBS.items():
        if knob.kind == "clients":
            continue  # secrets do not belong on a command line: use --config
        if knob.kind == "bool":
            knobs.add_argument(_flag(name), action="store_true", default=None, help=knob.help)
        elif knob.kind == "ids":
            knobs.add_argument(
                "--missing-id", dest=name, action="append", metavar="UUID", help=knob.help
            )
        elif knob.kind == "choice":
            knobs.add_argument(_flag(name), choices=knob.choices, help=knob.help)
        else:
            convert = int if knob.kind == "int" else float
            knobs.add_argument(_flag(name), type=convert, metavar="N", help=knob.help)
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The config the parsed command line asks for.

    Raises ConfigError for an invalid knob, OSError when --config cannot be
    read, ValueError when it is not JSON.
    """
    config = EmulatorConfig()
    if args.config:
        if args.config == "-":
            text = sys.stdin.read()
        else:
            with open(args.config, encoding="utf-8") as handle:
                text = handle.read()
        config = EmulatorConfig.from_json(json.loads(text))
    flags = {name: getattr(args, name) for name in KNOBS if getattr(args, name, None) is not None}
    return config.with_changes(flags)


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave serve_forever cleanly."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C; returns the exit code (2: bad arguments,
    1: cannot listen). Prints the listening line first, flushed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"ratebridge emulator: {exc}", file=sys.stderr)
        return 2
    try:
        server = EmulatorHTTPServer(
            EmulatorState(config), args.port, access_log=sys.stderr if args.access_log else None
        )
    except OSError as exc:
        print(f"ratebridge emulator: cannot listen on port {args.port}: {exc}", file=sys.stderr)
        return 1
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    print(LISTENING.format(url=server.url), flush=True)
    try:
        server.serve_forever()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        server.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
