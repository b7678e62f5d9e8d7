"""`crawl2chat <command>`: one console script, one subcommand per stage, and the tools around them.

The stage commands come from the stage table (conf/stages.py): a row whose stage needs
options of its own has a module in `crawl2chat/commands/<stage>.py`; every other stage's
command is built from its row alone (crawl2chat/stage_cli.py). The other commands (chat,
serve, pipeline, services, tools) are modules in crawl2chat/commands/ listed in
`TOOLS`. Heavy imports happen inside each command's `func`, keeping `--help` fast.

The exit contract (core/errors.py, docs/CONTRACTS.md) is applied here, once, for all:
0 done, 1 failed (one line + the path of the full log), 2 refused before any work (one
line), 3 partial. No traceback reaches the terminal.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from conf.stages import STAGES
from core.errors import EXIT_FAILED, EXIT_REFUSED, CommandError

# Commands that are not stages, after the stages in --help. A name whose module does not
# exist yet is skipped (a command in the making).
TOOLS = ["pipeline", "chat", "serve", "export", "quality-train", "up", "down", "deploy"]


def _module(name: str):
    try:
        return importlib.import_module(f"crawl2chat.commands.{name.replace('-', '_')}")
    except ModuleNotFoundError as e:
        if e.name == f"crawl2chat.commands.{name.replace('-', '_')}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    from crawl2chat.stage_cli import register_stage

    parser = argparse.ArgumentParser(
        prog="crawl2chat",
        description="From Common Crawl WARC files to a small chat model. Exit codes: 0 done, 1 failed, "
                    "2 refused (bad input, nothing done), 3 partial (inputs lost).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for st in STAGES:  # in the order of the recipe
        mod = _module(st.name)
        if mod is not None:
            mod.register(sub)
        else:
            register_stage(sub, st)
    for name in TOOLS:
        mod = _module(name)
        if mod is not None:
            mod.register(sub)
    return parser


def _log_path(args: argparse.Namespace) -> Path:
    """Where the full traceback of a failure goes: <out>/logs when the command has an output folder."""
    out = getattr(args, "out", None)
    base = Path(out) / "logs" if out else Path(tempfile.gettempdir()) / "crawl2chat-logs"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())  # a message with newlines is still one line on the terminal


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
        return EXIT_REFUSED
    name = f"crawl2chat {args.command}"
    try:
        rc = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader gone away is then a BrokenPipeError below
    except BrokenPipeError:
        # The reader of our output went away (`crawl2chat deploy | head -3`): stop quietly with the
        # status of a command SIGPIPE ends, as the shell's own tools do; not a crash with a log.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not raise again
        return 128 + signal.SIGPIPE
    except CommandError as e:
        print(f"{name}: {'error' if e.exit_code == EXIT_REFUSED else 'failed'}: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except (ValueError, FileNotFoundError) as e:
        # Bad input (a config value, a path, a checkpoint the resolver refuses): say what, no traceback.
        print(f"{name}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"{name}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line here, the traceback in a file
        try:
            log = _log_path(args)
            log.write_text(traceback.format_exc())
            where = f"; full log: {log}"
        except OSError:
            where = ""
        print(f"{name}: failed: {type(e).__name__}: {_one_line(e)}{where}", file=sys.stderr)
        return EXIT_FAILED
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
