"""`crawl2chat serve --model MODEL`: web chat + OpenAI-compatible API on 127.0.0.1:8000."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="web chat + OpenAI-compatible API for a model",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-sft/latest)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it: no auth!)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--preset", default=None, help="conf/presets/<name>.yaml section `serve`")
    p.add_argument("--device", default=None, help="cpu, cuda, ...")
    p.add_argument("--max-concurrent", type=int, default=None, help="requests in flight before 429")
    p.add_argument("--max-tokens", type=int, default=None, help="cap on a request's max_tokens")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    import conf
    from conf.serve import ServeConfig
    from crawl2chat.serve.app import create_app
    from lm.engine import load_engine

    cfg = conf.load(ServeConfig, args.preset, {"host": args.host, "port": args.port, "device": args.device,
                                               "max_concurrent": args.max_concurrent, "max_tokens": args.max_tokens})
    engine, meta = load_engine(args.model, device=cfg.device)
    name = args.model if args.model.startswith(("models:/", "runs:/")) else f"crawl2chat-{meta.get('kind', 'model')}"
    print(f"serving {args.model} on http://{cfg.host}:{cfg.port}/  (OpenAI API at /v1)")
    uvicorn.run(create_app(engine, name, cfg), host=cfg.host, port=cfg.port, log_level="info")
    return 0
