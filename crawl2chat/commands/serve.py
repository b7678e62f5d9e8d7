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
    p.add_argument("--request-timeout", type=float, default=None, help="per-request deadline in seconds")
    p.add_argument("--system", default=None, help="system message for requests that bring none")
    p.add_argument("--persona", action="store_true",
                   help="use the persona's system message (the checkpoint's, from SFT; else conf/persona.py's)")
    p.add_argument("--tools", default=None, help="comma list of tools to enable: calculator,python,search")
    p.add_argument("--search-index", default=None, help="index directory for the search tool (crawl2chat index)")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    import conf
    from conf.serve import ServeConfig
    from crawl2chat.serve.app import create_app
    from lm.engine import load_engine
    from lm.tools import tools_from_names

    tools = [t.strip() for t in args.tools.split(",") if t.strip()] if args.tools is not None else None
    cfg = conf.load(ServeConfig, args.preset, {"host": args.host, "port": args.port, "device": args.device,
                                               "max_concurrent": args.max_concurrent, "max_tokens": args.max_tokens,
                                               "request_timeout_s": args.request_timeout, "tools": tools,
                                               "search_index": args.search_index, "system_prompt": args.system})
    max_mem = int(cfg.max_model_memory_gb * 2**30) if cfg.max_model_memory_gb else None
    engine, meta = load_engine(args.model, device=cfg.device, max_memory_bytes=max_mem, tools=tools_from_names(cfg.tools, cfg.search_index))
    if args.persona and args.system is None:
        from lm.chat import Persona
        cfg.system_prompt = Persona.from_meta(meta, cfg.tools).system_message()
    name = args.model if args.model.startswith(("models:/", "runs:/")) else f"crawl2chat-{meta.get('kind', 'model')}"
    app = create_app(engine, name, cfg)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app.state.shutdown()  # open streams end within a token, so uvicorn's wait for them is short
            super().handle_exit(sig, frame)

    print(f"serving {args.model} on http://{cfg.host}:{cfg.port}/  (OpenAI API at /v1)", flush=True)
    try:
        Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                              limit_concurrency=cfg.max_connections,
                              timeout_graceful_shutdown=cfg.shutdown_grace_s)).run()
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its clean shutdown
        pass
    return 0

