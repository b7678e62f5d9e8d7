"""`crawl2chat down`: stop exactly the services `crawl2chat up` started."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from crawl2chat.commands.up import add_state_dir

    p = subparsers.add_parser(
        "down", help="stop the services started by `crawl2chat up`",
        description="Stop the processes recorded in STATE/services.json (each service's process group and "
                    "its descendants: SIGTERM, then SIGKILL after --grace seconds). Other Ray or Prefect "
                    "processes on this machine are left alone.")
    add_state_dir(p)
    p.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crawl2chat import services

    state = Path(args.state_dir).resolve() if args.state_dir else services.default_state_dir()
    if not services.read_state(state).get("procs"):
        print(f"nothing running under {state}")
        return 0
    pids = services.down(state, grace=args.grace)
    print(f"stopped {len(pids)} process(es) under {state}")
    return 0
