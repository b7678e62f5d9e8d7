"""Config of `crawl2chat serve`: the web chat and OpenAI-compatible API."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from conf.persona import ToolName
from conf.settings import Settings, model_getter, setting


@dataclass
class ServeSettings(Settings):
    """Server address, sampling defaults and the limits that protect a small CPU box."""

    section: ClassVar[str] = "serve"

    # Loopback unless told otherwise; another address needs an API key (CRAWL2CHAT_API_KEY or
    # --api-key-file) or `serve --insecure` (docs/SERVING.md). The key is never config: files get shared.
    host: str = "127.0.0.1"
    port: int = setting(8000, ge=0, le=65535)
    device: str = "cpu"  # cpu | cuda | auto
    # Tokens a conversation may fill (prompt + reply). None: the length the model was trained on.
    # Longer conversations keep the system message and their newest whole turns (lm.engine.fit_conversation).
    context: int | None = setting(None, gt=0)
    # Limits (HTTP 413 / 400 / 429 past them).
    max_prompt_tokens: int = setting(1024, gt=0)  # the prompt after older turns are dropped
    max_tokens: int = setting(512, gt=0)        # cap on a request's max_tokens
    default_max_tokens: int = setting(256, gt=0)
    max_concurrent: int = setting(4, ge=1)      # requests generating or queued at once
    max_n: int = setting(4, ge=1)               # cap on `n` (samples per request)
    max_body_bytes: int = setting(1 << 20, ge=1024)  # 413 past it, checked before parsing
    request_timeout_s: float = setting(120.0, gt=0)  # per-request deadline, waiting for the model included
    max_connections: int = setting(64, ge=1)     # open connections before uvicorn answers 503
    shutdown_grace_s: float = setting(5.0, ge=0)   # SIGINT/SIGTERM: streams end now, sockets close after this
    max_model_memory_gb: float | None = setting(None, gt=0)  # refuse checkpoints needing more (None: this machine's RAM)
    # Sampling defaults when a request leaves them out.
    temperature: float = setting(0.7, ge=0.0)
    top_k: int | None = setting(50, ge=1)
    top_p: float | None = setting(None, gt=0.0, le=1.0)
    tool_budget: int = setting(4, ge=0)          # tool calls per reply; past it the model reads an error
    # Tools the server enables (lm/tools/__init__.py: calculator, python, search); None: the tools the
    # checkpoint was trained to call. A request may narrow them (`tool_choice: "none"`, or the
    # extension field `tools_enabled: [...]`).
    tools: list[ToolName] | None = None
    search_index: str | None = None              # the index stage's output, for the search tool
    # System message for requests that bring none (`serve --system`, or `--persona`:
    # the persona's, from the checkpoint when SFT recorded one). None: no system message.
    system_prompt: str | None = None


# ServeConfig: the pydantic model of ServeSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"ServeConfig": "ServeSettings"})
