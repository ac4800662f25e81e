"""`ratebridge`: the operator CLI and the local tools.

Against AWS or local endpoints alike, through the standard AWS settings
(AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, ...). Exit codes: 0 done,
1 failed (DynamoDB unavailable, ...), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError

from limiter import (
    InvalidArgument,
    Limit,
    LimiterError,
    LimiterSettings,
)
from limiter import Limiter as _Limiter

EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _limiter() -> _Limiter:
    return _Limiter.from_env(LimiterSettings.from_env())


def _whole_number(text: str) -> int:
    """Parse only; the limiter validates the range (one place says what is allowed)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,16,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


# -- tables and limits ---------------------------------------------------------


def cmd_tables_create(args: argparse.Namespace) -> int:
    lim = _limiter()
    lim.create_tables()
    settings = LimiterSettings.from_env()
    print(f"tables ready: {settings.buckets_table}, {settings.limits_table}")
    return 0


def cmd_limits_set(args: argparse.Namespace) -> int:
    limit = _limiter().set_limit(args.bucket, args.requests, args.per, args.burst)
    print(f"{args.bucket}: {limit} (takes effect on every caller's next acquire)")
    return 0


def cmd_limits_get(args: argparse.Namespace) -> int:
    limit = _limiter().get_limit(args.bucket)
    if args.json:
        print(json.dumps({"bucket": args.bucket, **_limit_dict(limit)}))
    else:
        print(f"{args.bucket}: {limit}")
    return 0


def cmd_limits_list(args: argparse.Namespace) -> int:
    configured = _limiter().list_limits()
    if args.json:
        rows = [
            {"bucket": c.bucket, **_limit_dict(c.limit), "version": c.version} for c in configured
        ]
        print(json.dumps(rows))
        return 0
    if not configured:
        print(
            "no limits configured: add one with `ratebridge limits set BUCKET --requests N --per S`"
        )
        return 0
    for c in configured:
        print(f"{c.bucket}: {c.limit} (version {c.version})")
    return 0


def cmd_limits_delete(args: argparse.Namespace) -> int:
    if _limiter().delete_limit(args.bucket):
        print(f"{args.bucket}: deleted; its callers now get LimitNotConfigured")
        return 0
    print(f"{args.bucket}: no such limit", file=sys.stderr)
    return EXIT_FAILED


def _limit_dict(limit: Limit) -> dict[str, object]:
    return {"requests": limit.requests, "per_seconds": limit.per_seconds, "burst": limit.burst}


# -- benchmarks -------------------------------------------------------------------


def cmd_bench_limiter(args: argparse.Namespace) -> int:
    from ratebridge_tools.bench import limiter as bench

    config = bench.BenchConfig(
        backend=args.backend,
        callers=args.callers,
        requests=args.requests,
        per_seconds=args.per,
        burst=args.burst,
        duration=args.duration,
        strategies=tuple(args.strategies.split(",")),
    )
    cells = bench.run(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(
        f"\nlimiter benchmark: {config.requests} per {config.per_seconds:g}s "
        f"(burst {config.burst}), {config.duration:g}s per cell, backend {config.backend}\n"
    )
    print(bench.table(cells))
    if args.json:
        with open(args.json, "w") as out:
            out.write(bench.to_json(config, cells))
        print(f"\nwrote {args.json}")
    return 0


def cmd_bench_genesys(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ratebridge_tools.bench import genesys as bench
    from ratebridge_tools.emulator import EmulatorAdminError
    from ratebridge_tools.servers import ServerStartError

    try:
        config = bench.BenchConfig(
            backend=args.backend,
            concurrency=args.concurrency,
            backlog=args.backlog,
            requests=args.requests,
            per_seconds=args.per,
            strategies=tuple(s.strip() for s in args.strategies.split(",")),
            cell_timeout=args.cell_timeout,
        )
    except ValueError as exc:
        print(f"ratebridge bench genesys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json and not Path(args.json).resolve().parent.is_dir():
        print(f"ratebridge bench genesys: no directory for --json {args.json}", file=sys.stderr)
        return EXIT_USAGE
    try:
        cells = bench.run(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (ServerStartError, EmulatorAdminError) as exc:
        print(f"ratebridge bench genesys: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"\nGenesys benchmark: {config.backlog} GET /users tasks, emulator limit "
        f"{config.requests} per {config.per_seconds:g}s per OAuth client (sliding), "
        f"backend {config.backend}\n"
    )
    print(bench.table(cells))
    if args.json:
        with open(args.json, "w") as out:
            out.write(bench.to_json(config, cells))
        print(f"\nwrote {args.json}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ratebridge_tools import status

    if not 0.1 <= args.interval <= 3600:  # also refuses NaN
        raise ValueError(f"--interval must be within [0.1, 3600] seconds, got {args.interval}")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    frames = args.frames if args.watch else 1
    tty = sys.stdout.isatty()

    def show(rows: list[status.Row], at: float) -> None:
        if args.json:
            print(json.dumps([r.to_json() for r in rows]), flush=True)
            return
        if args.watch and tty:
            sys.stdout.write("\x1b[H\x1b[2J")  # clear the screen: a view that refreshes
        print(status.render(rows, at), flush=True)
        if args.watch and not tty:
            print(flush=True)

    try:
        status.watch(
            _limiter(), args.buckets or None, interval=args.interval, frames=frames, show=show
        )
    except KeyboardInterrupt:
        if not args.watch:
            raise
    return 0


def _limit_arg(text: str) -> Limit:
    """REQUESTS/SECONDS[/BURST], e.g. 100/10 or 300/60/3 (the limiter validates it)."""
    parts = text.split("/")
    try:
        if len(parts) not in (2, 3):
            raise ValueError("expected two or three numbers")
        burst = int(parts[2]) if len(parts) == 3 else 1
        return Limit(requests=int(parts[0]), per_seconds=float(parts[1]), burst=burst)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected REQUESTS/SECONDS[/BURST] like 100/10, got {text!r} ({exc})"
        ) from None


def _share(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo` and `simulate`: the whole pipeline on loopback (ratebridge_tools.demo)."""
    from pathlib import Path

    from ratebridge_tools import demo

    limit: Limit = args.limit
    knobs = {
        name: getattr(args, name)
        for name in (
            "duplicate_share",
            "malformed_share",
            "seed",
            "function_timeout",
            "max_seconds",
        )
        if getattr(args, name, None) is not None
    }
    config = demo.DemoConfig(
        events=args.events,
        workers=args.workers,
        requests=limit.requests,
        per_seconds=limit.per_seconds,
        burst=limit.burst,
        batch_size=args.batch_size,
        strategy=args.strategy,
        chart=None if args.no_chart else Path(args.chart),
        **knobs,
    )
    config.pipeline()  # refuse bad knobs before starting any server
    result = demo.run(config)
    print()
    print(demo.summary(result))
    if args.json:
        demo.write_json(result, Path(args.json))
        print(f"wrote {args.json}")
    return 0


def cmd_infra_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ratebridge_tools import infracheck

    template = Path(args.template)
    if not template.is_file():
        raise ValueError(f"no template at {template}")
    report = infracheck.run(
        template,
        exercise_handler=not args.no_exercise,
        say=lambda layer: print(f"-- {layer}", flush=True),
    )
    for finding in report.findings:
        print(finding)
    if report.exercise:
        print("exercise: " + ", ".join(f"{k}={v}" for k, v in report.exercise.items()))
        print(f"exercise: {len(report.usage)} (action, resource) pairs used, each checked")
    layers = ", ".join(report.layers)
    if report.ok:
        print(f"{template}: no findings ({layers})")
        return 0
    print(f"{template}: {len(report.findings)} findings ({layers})")
    return EXIT_FAILED


def cmd_chaos(args: argparse.Namespace) -> int:
    """`chaos`: every scenario on a fresh local pipeline, then the clock-skew run."""
    from dataclasses import replace
    from pathlib import Path

    from ratebridge_tools import chaos
    from ratebridge_tools.servers import local_aws_env, start_moto

    if args.list:
        for s in chaos.SCENARIOS:
            profiles = "short, long" if s.in_short else "long"
            print(f"{s.name:24} {s.fault} ({profiles})")
        return 0
    for name in args.scenario or ():
        chaos.scenario_named(name)  # refuse a bad name before starting anything
    profile = chaos.LONG if args.long else chaos.SHORT
    if args.events is not None:
        profile = replace(profile, events=args.events)
    if args.workers is not None:
        profile = replace(profile, workers=args.workers)
    outcomes = chaos.run(args.scenario or (), profile, every=args.long or args.all)
    print()
    print(chaos.table(outcomes))
    skew = None
    if not args.no_skew:
        print("\nclock skew: callers with offset clocks on one bucket ...")
        with start_moto() as moto, local_aws_env(moto.url):
            skew = chaos.skew_experiment(moto.url)
        print(f"clock skew: {skew.summary()}")
    if args.json:
        data = {
            "scenarios": [o.to_json() for o in outcomes],
            "skew": None if skew is None else skew.to_json(),
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = [o.scenario for o in outcomes if not o.ok]
    if skew is not None and not skew.ok:
        failed.append("clock-skew")
    if failed:
        print(f"broken promises in: {', '.join(failed)}")
        return EXIT_FAILED
    print("every promise held: nothing lost, nothing doubled, the limit kept")
    return 0


def _add_chaos(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ratebridge_tools.chaos import SCENARIOS

    chaos = commands.add_parser(
        "chaos",
        help="the pipeline under faults: lost, doubled, 429s and recovery per scenario",
        description="Each scenario runs the whole local pipeline on a small load, injects "
        "one fault, drains the queue and checks that nothing was lost or doubled, that "
        "Genesys saw no request without a grant and no window over the limit, and how "
        "soon the fleet wrote again after the fault. Exits 1 if a promise broke.",
    )
    chaos.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in SCENARIOS],
        metavar="NAME",
        help="run only this scenario (repeatable; --list names them)",
    )
    chaos.add_argument("--list", action="store_true", help="list the scenarios and stop")
    chaos.add_argument(
        "--all", action="store_true", help="every scenario (default: the short profile's)"
    )
    chaos.add_argument(
        "--long", action="store_true", help="every scenario, 400 events and 8 workers each"
    )
    chaos.add_argument("--events", type=_whole_number, help="SQS deliveries per scenario")
    chaos.add_argument("--workers", type=_whole_number, help="concurrent function instances")
    chaos.add_argument("--no-skew", action="store_true", help="skip the clock-skew run")
    chaos.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    chaos.set_defaults(handler=cmd_chaos)


def run_emulator(argv: Sequence[str]) -> int:
    from ratebridge_tools.emulator.__main__ import main as emulator_main

    return emulator_main(list(argv))


# -- the parser ---------------------------------------------------------------------


def _add_bench_genesys(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ratebridge bench genesys` and its flags."""
    bg = bench_sub.add_parser(
        "genesys",
        help="the tutorial's approach (seed) vs ratebridge draining a backlog on the emulator",
    )
    bg.add_argument("--backend", choices=("dynalite", "moto"), default="dynalite")
    bg.add_argument("--concurrency", type=_int_list, default=(16, 64), help="e.g. 16,64")
    bg.add_argument("--backlog", type=_whole_number, default=300, help="tasks to drain")
    bg.add_argument("--requests", type=_whole_number, default=100, help="the emulator's limit")
    bg.add_argument("--per", type=_number, default=10.0, metavar="SECONDS")
    bg.add_argument("--strategies", default="seed,ratebridge")
    bg.add_argument(
        "--cell-timeout",
        type=_number,
        default=300.0,
        metavar="SECONDS",
        help="longest time for one strategy at one concurrency (default 300)",
    )
    bg.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bg.set_defaults(handler=cmd_bench_genesys)


def _add_infra(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ratebridge infra check` and its flags."""
    infra = commands.add_parser("infra", help="the SAM template's offline checks")
    infra_sub = infra.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = infra_sub.add_parser(
        "check",
        help="cfn-lint, the translated template deployed in moto, and the handler run on it",
    )
    check.add_argument("--template", default="infra/template.yaml")
    check.add_argument(
        "--no-exercise", action="store_true", help="skip running the handler on the stack"
    )
    check.set_defaults(handler=cmd_infra_check)


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from ratebridge_tools.demo import STRATEGIES, DemoConfig

    d = DemoConfig()
    parser.add_argument("--events", type=_whole_number, default=d.events, help="SQS deliveries")
    parser.add_argument(
        "--workers", type=_whole_number, default=d.workers, help="MaximumConcurrency"
    )
    parser.add_argument(
        "--limit",
        type=_limit_arg,
        default=Limit(d.requests, d.per_seconds, d.burst),
        metavar="REQUESTS/SECONDS[/BURST]",
        help=f"the Genesys limit (default {d.requests}/{d.per_seconds:g})",
    )
    parser.add_argument("--batch-size", type=_whole_number, default=d.batch_size)
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default=d.strategy,
        help="seed: the tutorial's handler on the same load, for comparison",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--chart", default=str(d.chart), metavar="PATH", help="the PNG chart")
    parser.add_argument("--no-chart", action="store_true")
    parser.set_defaults(handler=cmd_demo)


def _add_limits(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ratebridge tables create` and `ratebridge limits set|get|list|delete`."""
    tables = commands.add_parser("tables", help="create the DynamoDB tables (local use)")
    tables_sub = tables.add_subparsers(dest="action", required=True, metavar="ACTION")
    tables_sub.add_parser("create", help="create the limiter's tables if missing").set_defaults(
        handler=cmd_tables_create
    )

    limits = commands.add_parser("limits", help="set, get, list or delete rate limits")
    limits_sub = limits.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_ = limits_sub.add_parser("set", help="set a bucket's limit (effective at once)")
    set_.add_argument("bucket")
    set_.add_argument("--requests", type=_whole_number, required=True, help="requests per window")
    set_.add_argument("--per", type=_number, required=True, metavar="SECONDS", help="window length")
    set_.add_argument("--burst", type=_whole_number, default=1, help="grants at once (default 1)")
    set_.set_defaults(handler=cmd_limits_set)
    get = limits_sub.add_parser("get", help="show a bucket's limit")
    get.add_argument("bucket")
    get.add_argument("--json", action="store_true")
    get.set_defaults(handler=cmd_limits_get)
    list_ = limits_sub.add_parser("list", help="list every limit")
    list_.add_argument("--json", action="store_true")
    list_.set_defaults(handler=cmd_limits_list)
    delete = limits_sub.add_parser("delete", help="delete a bucket's limit and state")
    delete.add_argument("bucket")
    delete.set_defaults(handler=cmd_limits_delete)


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ratebridge bench limiter|genesys`."""
    bench = commands.add_parser("bench", help="benchmarks that print comparison tables")
    bench_sub = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bl = bench_sub.add_parser(
        "limiter", help="ratebridge's limiter vs the fine-grained-rate-limit demo, side by side"
    )
    bl.add_argument("--backend", choices=("dynalite", "moto"), default="dynalite")
    bl.add_argument("--callers", type=_int_list, default=(1, 16, 64), help="e.g. 1,16,64")
    bl.add_argument("--requests", type=_whole_number, default=100)
    bl.add_argument("--per", type=_number, default=1.0, metavar="SECONDS")
    bl.add_argument("--burst", type=_whole_number, default=1)
    bl.add_argument("--duration", type=_number, default=10.0, metavar="SECONDS")
    bl.add_argument("--strategies", default="fine-grained-demo,ratebridge")
    bl.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bl.set_defaults(handler=cmd_bench_limiter)
    _add_bench_genesys(bench_sub)


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ratebridge status [--watch]`."""
    status = commands.add_parser(
        "status", help="every bucket live from DynamoDB: grants/s, utilization, blocks, waiters"
    )
    status.add_argument("buckets", nargs="*", metavar="BUCKET", help="default: every bucket")
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument(
        "--interval", type=_number, default=1.0, metavar="SECONDS", help="between readings"
    )
    status.add_argument("--frames", type=_whole_number, help="with --watch: stop after N views")
    status.add_argument("--json", action="store_true", help="one JSON list per view")
    status.set_defaults(handler=cmd_status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratebridge",
        description="Operate ratebridge's shared rate limits, and run its local tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_limits(commands)
    _add_bench(commands)
    # Listed for --help; main() hands its arguments to the emulator's own parser.
    commands.add_parser(
        "emulator",
        help="a local Genesys Cloud API emulator (`ratebridge emulator --help` for its knobs)",
        add_help=False,
    )

    _add_infra(commands)

    _add_status(commands)
    _add_chaos(commands)

    demo = commands.add_parser(
        "demo", help="run the main job locally on embedded servers (what scripts/demo runs)"
    )
    _add_demo_arguments(demo)
    simulate = commands.add_parser(
        "simulate", help="the demo's engine with every knob (load mix, timeouts, seeds)"
    )
    _add_demo_arguments(simulate)
    simulate.add_argument("--duplicates", dest="duplicate_share", type=_share, metavar="SHARE")
    simulate.add_argument("--malformed", dest="malformed_share", type=_share, metavar="SHARE")
    simulate.add_argument("--seed", type=_whole_number, help="the load's random seed")
    simulate.add_argument("--function-timeout", type=_number, metavar="SECONDS")
    simulate.add_argument("--max-seconds", type=_number, metavar="SECONDS", help="stop draining")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        return run_emulator(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("ratebridge: interrupted", file=sys.stderr)
        return 130
    except (LimiterError, BotoCoreError) as exc:
        message, code = explain(exc)
        print(f"ratebridge: {message}", file=sys.stderr)
        return code
    except ValueError as exc:  # a configuration the command refused before starting anything
        print(f"ratebridge: {exc}", file=sys.stderr)
        return EXIT_USAGE


def explain(exc: Exception) -> tuple[str, int]:
    """What to tell the operator about `exc`, and the exit code."""
    if isinstance(exc, InvalidArgument):
        return str(exc), EXIT_USAGE
    text = str(exc)
    if isinstance(exc, NoCredentialsError) or "NoCredentialsError" in text:
        return (
            f"{text}\n  no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID",
            EXIT_FAILED,
        )
    if isinstance(exc, NoRegionError) or "NoRegionError" in text:
        return f"{text}\n  no AWS region configured: set AWS_REGION", EXIT_FAILED
    return text, EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
