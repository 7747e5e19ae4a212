"""Command line: `qss-exporter run | demo | check-config | replay | lookup` (argparse; see ARCHITECTURE.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from qss_exporter import __version__
from qss_exporter.app import Agent, exit_within_budget
from qss_exporter.config import Config, config_from_mapping
from qss_exporter.core import config_budget
from qss_exporter.demo.driver import DemoDriver, demo_config
from qss_exporter.demo.simulator import default_accounts
from qss_exporter.enrichment import ENRICHMENT_LABELS
from qss_exporter.errors import ConfigError
from qss_exporter.identity import lookup
from qss_exporter.logs import configure_logging
from qss_exporter.outputs.prometheus import render
from qss_exporter.process_tuning import tune_process
from qss_exporter.sources.replay import replay_files
from qss_exporter.validation import load_checked

__all__ = ["main"]

log = logging.getLogger("qss_exporter")


def _run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where installed (as `uvicorn.run` would): measured ~1.6x the agent's throughput
    on the stdlib loop (bench/README.md)."""
    tune_process()  # the young GC generation and glibc's mmap threshold (process_tuning.py says why)
    try:
        import uvloop
    except ImportError:  # not available on every platform; the stdlib loop works, just slower
        asyncio.run(main)
        return
    uvloop.run(main)


def _serve(agent: Agent, **kwargs: Any) -> None:
    """Serve until stopped, and exit within the shutdown budget whatever the peers do."""
    _run_async(agent.serve(install_signal_handlers=True, **kwargs))
    exit_within_budget(agent)


def _config_path(args: argparse.Namespace) -> str:
    path: str | None = args.config or os.environ.get("QSS_EXPORTER_CONFIG")
    if not path:
        raise SystemExit("error: give --config PATH or set QSS_EXPORTER_CONFIG")
    return path


def _load(args: argparse.Namespace) -> Config:
    """The configuration, validated completely: the same checks as check-config (validation.py)."""
    return load_checked(_config_path(args), web_config_file=_web_config_flag(args)).config


def _web_config_flag(args: argparse.Namespace) -> str | None:
    """`--web.config.file`, which overrides listen.metrics_web_config_file as in the Prometheus exporters."""
    path: str | None = getattr(args, "web_config_file", None)
    return path or None


def cmd_check_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    try:
        checked = load_checked(path, web_config_file=_web_config_flag(args))
    except ConfigError as error:
        print(f"{path}: invalid configuration", file=sys.stderr)  # noqa: T201 - CLI output
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    config = checked.config
    budget = config_budget(config)
    for warning in (*checked.warnings, *budget.warnings()):
        print(f"{path}: warning: {warning}", file=sys.stderr)  # noqa: T201 - CLI output
    accounts = ", ".join(account.name for account in config.accounts)
    print(f"{path}: ok ({len(config.accounts)} account(s): {accounts})")  # noqa: T201 - CLI output
    print("series budget, the worst case per family for this configuration (docs/metrics.md#series-budget):")  # noqa: T201 - CLI output
    print("\n".join(budget.table()))  # noqa: T201 - CLI output
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    configure_logging(config.log.level, config.log.format)
    path, web_config_file = _config_path(args), _web_config_flag(args)

    def reload_from() -> tuple[Config, tuple[str, ...]]:
        # SIGHUP and POST /-/reload: the same file and flags, the same validation as start-up.
        checked = load_checked(path, web_config_file=web_config_file)
        return checked.config, checked.warnings

    _serve(Agent(config, reload_from=reload_from))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    mapping, tokens = demo_config(default_accounts(), args.webhook_listen, args.metrics_listen, args.speed, args.labels)
    config = config_from_mapping(mapping, source="<demo>")
    configure_logging(args.log_level, "plain")
    driver = DemoDriver.create(tokens, args.speed, args.participants, args.seed)

    def announce(agent: Agent) -> None:
        lines = [
            "qss-exporter demo is running: a simulated organisation sends signed webhooks to this agent.",
            f"  metrics:   {agent.url('metrics')}/metrics",
            f"  landing:   {agent.url('metrics')}/",
            f"  webhook:   {agent.url('webhook')}{config.webhook.path}",
            f"  speed:     {args.speed:g}x real time, ~{args.participants} concurrent participants",
            "  incidents: " + "; ".join(incident.description for incident in driver.simulator.incidents),
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)  # noqa: T201 - the demo's purpose is to tell the user where to look

    async def simulate(agent: Agent) -> None:
        await driver.run(agent.url("webhook") + config.webhook.path)

    async def stop_after(agent: Agent) -> None:
        await asyncio.sleep(args.duration)
        agent.stop()

    tasks = [simulate] + ([stop_after] if args.duration else [])
    _serve(Agent(config), extra_tasks=tasks, on_ready=announce)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    config = _load(args)
    configure_logging(config.log.level, config.log.format)
    agent = Agent(config, poll=False)  # a replay never calls Zoom
    outcomes = replay_files(agent.pipeline, [Path(p) for p in args.files])
    summary = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items())) or "no events"
    log.info("replayed %s: %s", " ".join(args.files), summary)
    if args.serve:
        _serve(agent)
    else:
        sys.stdout.buffer.write(render(agent.store, args.openmetrics))
    return 1 if outcomes.get("malformed") else 0


def cmd_lookup(args: argparse.Namespace) -> int:
    """Print the detail-mode label of each value, one per line, so support can find a person's series."""
    config = _load(args)
    key = config.detail.hash_key
    if key is None:
        print("error: detail.hash_key (or detail.hash_key_file) is not set in the configuration", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    for value in args.values:
        print(lookup(key.reveal().encode(), value))  # noqa: T201 - CLI output
    return 0


def _demo_labels(text: str) -> tuple[str, ...] | None:
    """`--labels`: None for the defaults, else the enrichment labels to turn on."""
    if text == "default":
        return None
    if text == "all":
        return ENRICHMENT_LABELS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ENRICHMENT_LABELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected default, all or some of {', '.join(ENRICHMENT_LABELS)}; got {text!r}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qss-exporter", description="Zoom QSS webhooks and REST summaries as Prometheus and OpenTelemetry metrics."
    )
    parser.add_argument("--version", action="version", version=f"qss-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", metavar="PATH", help="YAML configuration (default: $QSS_EXPORTER_CONFIG)")

    def with_web_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--web.config.file",
            dest="web_config_file",
            metavar="PATH",
            help="exporter-toolkit web configuration (TLS, basic auth) for the metrics listener; "
            "overrides listen.metrics_web_config_file (docs/security.md)",
        )

    run = commands.add_parser("run", help="run the agent")
    with_config(run)
    with_web_config(run)
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="run the agent fed by a simulated organisation (no Zoom account needed)")
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    demo.add_argument("--participants", type=int, default=120, help="concurrent participants to simulate (default 120)")
    demo.add_argument("--webhook-listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    demo.add_argument("--metrics-listen", default="127.0.0.1:9877", metavar="HOST:PORT", help="default 127.0.0.1:9877")
    demo.add_argument(
        "--duration", type=float, default=0.0, metavar="SECONDS", help="stop after this long (0: run until stopped)"
    )
    demo.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    demo.add_argument(
        "--labels",
        type=_demo_labels,
        default=None,
        metavar="LABELS",
        help="enrichment labels: `default` (network_type and site, as a configuration without `labels:`), `all`, "
        f"or a comma-separated list of {', '.join(ENRICHMENT_LABELS)}",
    )
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    demo.set_defaults(handler=cmd_demo)

    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    with_config(check)
    with_web_config(check)
    check.set_defaults(handler=cmd_check_config)

    replay = commands.add_parser("replay", help="feed captured webhook bodies (JSON lines) through the pipeline")
    with_config(replay)
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--serve", action="store_true", help="keep serving /metrics after replaying")
    replay.add_argument("--openmetrics", action="store_true", help="print OpenMetrics instead of Prometheus text")
    replay.set_defaults(handler=cmd_replay)

    find = commands.add_parser(
        "lookup",
        help="print the detail-mode label an email, account user id or meeting number gets",
        description="Print the keyed-hash label (detail mode) of each VALUE, one per line: an email, an account "
        "user id or a meeting number. `hmac:LABEL` is also how a hashed detail.allowlist entry is written.",
    )
    with_config(find)
    find.add_argument("values", nargs="+", metavar="VALUE")
    find.set_defaults(handler=cmd_lookup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    except KeyboardInterrupt:
        return 130
    return code
