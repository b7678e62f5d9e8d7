"""`crawl2chat deploy`: list the deployments, or register them on a Prefect work pool."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "deploy", help="list the flow deployments, or register them on a work pool",
        description="Every flow has deployments with named presets (llm-pipeline/tiny, curate/default, "
                    "pretrain/gpt2, ...). `crawl2chat up` serves them locally. On shared services, "
                    "register them on a process work pool whose workers have the project installed "
                    "(infra/docker-compose.yml does this) and start a worker: "
                    "`prefect worker start --pool POOL`.")
    p.add_argument("--work-pool", default=None,
                   help="register every deployment on this Prefect work pool ($PREFECT_API_URL)")
    p.add_argument("--path", default=None,
                   help="project directory on the worker machines (default: this checkout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows import deployments, runtime

    if not args.work_pool:
        for spec in deployments.specs(parameters=False):  # names only: nothing built, nothing written
            print(f"{spec['flow']}/{spec['name']:<10} {spec['description']}")
        print("serve them with `crawl2chat up`, or register on a pool with --work-pool NAME")
        return 0
    import os

    if not os.environ.get("PREFECT_API_URL"):
        raise ValueError("--work-pool needs a Prefect server: set PREFECT_API_URL (e.g. `source .crawl2chat/env.sh`)")
    names = deployments.apply_to_pool(args.work_pool, args.path or str(runtime.REPO_ROOT))
    for n in names:
        print(f"registered {n} on work pool {args.work_pool!r}")
    return 0
