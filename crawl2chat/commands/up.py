"""`crawl2chat up`: start the local services (Prefect, MLflow, Ray head, deployment runner)."""
from __future__ import annotations

import argparse

from crawl2chat.services import DEFAULT_PORTS


def add_state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=None,
                   help="where pid files, logs, databases and env.sh live "
                        "(default: $CRAWL2CHAT_STATE_DIR or ./.crawl2chat)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "up", help="start Prefect, MLflow, a Ray head and the deployment runner on 127.0.0.1",
        description="Start real local services on 127.0.0.1: a Prefect server (sqlite), an MLflow tracking "
                    "server (sqlite + local artifact store), a Ray head node and a runner serving every "
                    "deployment (e.g. `prefect deployment run 'llm-pipeline/tiny'`). Waits until each is "
                    "healthy, prints the UI URLs and writes STATE/env.sh. Running it again is harmless.")
    add_state_dir(p)
    p.add_argument("--prefect-port", type=int, default=DEFAULT_PORTS["prefect"])
    p.add_argument("--mlflow-port", type=int, default=DEFAULT_PORTS["mlflow"])
    p.add_argument("--ray-port", type=int, default=DEFAULT_PORTS["ray"], help="Ray GCS port")
    p.add_argument("--ray-dashboard-port", type=int, default=DEFAULT_PORTS["ray_dashboard"])
    p.add_argument("--no-ray-dashboard", action="store_true", help="start the Ray head without its dashboard")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the Ray head (default: all)")
    p.add_argument("--no-runner", action="store_true", help="do not serve the deployments")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the services to be healthy")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crawl2chat import services

    state = Path(args.state_dir).resolve() if args.state_dir else services.default_state_dir()
    s = services.Settings(state_dir=state, prefect_port=args.prefect_port, mlflow_port=args.mlflow_port,
                          ray_port=args.ray_port, ray_dashboard_port=args.ray_dashboard_port,
                          ray_dashboard=not args.no_ray_dashboard, num_cpus=args.num_cpus,
                          runner=not args.no_runner, timeout=args.timeout)
    data = services.up(s)
    print(f"crawl2chat services are up (state: {state})")
    print(f"  Prefect UI     {s.prefect_ui_url}")
    print(f"  MLflow UI      {s.mlflow_url}")
    if s.ray_dashboard_url:
        print(f"  Ray dashboard  {s.ray_dashboard_url}")
    print(f"  Ray address    {s.ray_address}")
    if "runner" in data["procs"]:
        print("  runner         serving the deployments of flows/deployments.py")
    print(f"point your shell at them:  source {state / 'env.sh'}")
    print("then e.g.:  prefect deployment run 'llm-pipeline/tiny'      stop with: crawl2chat down")
    return 0
