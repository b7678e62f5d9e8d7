"""`crawl2chat serve --model MODEL`: web chat + OpenAI-compatible API on 127.0.0.1:8000.

An API key (env CRAWL2CHAT_API_KEY, or --api-key-file; never a command-line value, which
every user of the machine sees in `ps`) makes every /v1/* request need
`Authorization: Bearer <key>`. Binding an address other than loopback without a key is
refused unless --insecure says so. docs/SERVING.md has the threat model.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

KEY_ENV = "CRAWL2CHAT_API_KEY"


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="web chat + OpenAI-compatible API for a model",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-sft@latest)")
    p.add_argument("--host", default=None,
                   help="address to bind (default 127.0.0.1); another address needs an API key or --insecure")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--preset", default=None, help="conf/presets/<name>.yaml section `serve`")
    p.add_argument("--device", default=None, help="cpu, cuda, ...")
    p.add_argument("--context", type=int, default=None,
                   help="tokens a conversation may fill (prompt + reply); default: the length the model was "
                        "trained on, at most its rotary range (4x that). Longer conversations drop their oldest turns")
    p.add_argument("--max-concurrent", type=int, default=None, help="requests in flight before 429")
    p.add_argument("--max-tokens", type=int, default=None, help="cap on a request's max_tokens")
    p.add_argument("--request-timeout", type=float, default=None, help="per-request deadline in seconds")
    p.add_argument("--system", default=None, help="system message for requests that bring none")
    p.add_argument("--persona", action="store_true",
                   help="use the persona's system message (the checkpoint's, from SFT; else conf/persona.py's)")
    p.add_argument("--tools", default=None,
                   help="comma list of tools to enable: calculator,python,search ('' none); default: the tools "
                        "the checkpoint was trained to call")
    p.add_argument("--search-index", default=None,
                   help="index directory for the search tool (default: the index of the checkpoint's run, if any)")
    p.add_argument("--api-key-file", default=None,
                   help=f"file holding the API key ('-' reads a line from stdin); or set ${KEY_ENV}")
    p.add_argument("--api-key", default=None, help=argparse.SUPPRESS)  # refused: see api_key()
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without an API key (anyone who reaches the port can use it)")
    p.set_defaults(func=run)


def api_key(args, environ=os.environ) -> str | None:
    """The API key from --api-key-file or $CRAWL2CHAT_API_KEY (None: no auth); refuses a key on the command line."""
    import sys

    from core.errors import Refused

    if args.api_key is not None:
        raise Refused(f"--api-key puts the key where every user of this machine sees it (ps); set ${KEY_ENV} "
                      f"or use --api-key-file FILE instead")
    if args.api_key_file is not None:
        if args.api_key_file == "-":
            key = sys.stdin.readline()
        else:
            try:
                key = Path(args.api_key_file).read_text(encoding="utf-8")
            except OSError as e:
                raise Refused(f"--api-key-file {args.api_key_file}: {e.strerror or e}") from None
        key = key.strip()
        if not key:
            raise Refused(f"--api-key-file {args.api_key_file} holds no key")
        return key
    key = environ.get(KEY_ENV, "").strip()
    return key or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def run(args) -> int:
    import uvicorn

    import conf
    from conf.serve import ServeConfig
    from core.errors import Refused
    from crawl2chat.serve.app import create_app
    from crawl2chat.serve.setup import build_tools, choose_tools, persona_system
    from lm.engine import load_engine

    key = api_key(args)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()] if args.tools is not None else None
    cfg = conf.load(ServeConfig, args.preset, {"host": args.host, "port": args.port, "device": args.device,
                                               "context": args.context,
                                               "max_concurrent": args.max_concurrent, "max_tokens": args.max_tokens,
                                               "request_timeout_s": args.request_timeout, "tools": tools,
                                               "search_index": args.search_index, "system_prompt": args.system})
    if not is_loopback(cfg.host) and key is None and not args.insecure:
        raise Refused(f"--host {cfg.host} lets anyone who reaches this machine use the model: set ${KEY_ENV} "
                      f"(or --api-key-file FILE) so requests need the key, or pass --insecure to serve without one")
    max_mem = int(cfg.max_model_memory_gb * 2**30) if cfg.max_model_memory_gb else None
    engine, meta = load_engine(args.model, device=cfg.device, max_context=cfg.context, max_memory_bytes=max_mem,
                               tools=None)
    choice = choose_tools(cfg.tools, meta, cfg.search_index)
    engine.tools = build_tools(choice)
    if args.persona and args.system is None:
        cfg.system_prompt = persona_system(meta, choice)
    name = args.model if args.model.startswith(("models:/", "runs:/")) else f"crawl2chat-{meta.get('kind', 'model')}"
    app = create_app(engine, name, cfg, api_key=key)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app.state.shutdown()  # open streams end within a token, so uvicorn's wait for them is short
            super().handle_exit(sig, frame)

    for note in choice.notes:
        print(f"note: {note}", flush=True)
    auth = "API key required" if key else ("no API key: anyone who reaches the port" if args.insecure
                                           and not is_loopback(cfg.host) else "no API key (loopback only)")
    print(f"serving {args.model} on http://{cfg.host}:{cfg.port}/  (OpenAI API at /v1; {auth}; "
          f"context {engine.max_context} tokens; tools: {', '.join(choice.names) or 'none'})", flush=True)
    try:
        Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                              limit_concurrency=cfg.max_connections,
                              timeout_graceful_shutdown=cfg.shutdown_grace_s)).run()
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its clean shutdown
        pass
    return 0
