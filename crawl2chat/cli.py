"""`crawl2chat <stage>`: one console script, one subcommand per stage.

Each subcommand lives in `crawl2chat/commands/<name>.py` and exposes
`register(subparsers)` (adds its parser, sets `func`) so stages stay
independent; heavy imports happen inside `func`, keeping `--help` fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order is the order of the recipe; shown in --help.
COMMANDS = [
    "curate", "index", "tokenize", "pretrain", "probe", "sft", "rl", "reward", "rlhf", "dpo",
    "chat", "serve", "eval", "pipeline", "up", "down", "deploy",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crawl2chat",
        description="From Common Crawl WARC files to a small chat model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<stage>")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"crawl2chat.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name == f"crawl2chat.commands.{name}":
                continue  # stage not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.telemetry import disable_telemetry

    disable_telemetry()  # before any stage imports prefect/ray/mlflow or starts their servers
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every Prefect API call is an httpx request: keep them out of INFO output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # Bad input: say what and stop, no traceback for a user error.
        print(f"crawl2chat {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
