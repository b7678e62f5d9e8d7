"""Web chat + OpenAI-compatible API over one `lm.engine.Engine`.

Routes:
  GET  /                       one-page chat (static/index.html), streams replies
  GET  /v1/models              the one model served
  POST /v1/chat/completions    OpenAI Chat Completions, `stream` true (SSE) or false
  GET  /health

Limits, with OpenAI-style error bodies: prompt longer than `max_prompt_tokens`
→ 413; bad request (unknown role, max_tokens over the cap, n over the cap, empty
messages) → 400; more than `max_concurrent` requests in flight → 429.
Generation runs in a worker thread (CPU-bound torch), one request at a time on
the model; admitted requests beyond the one running wait their turn.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from conf.serve import ServeConfig
from lm.engine import Engine, render_prompt

STATIC = Path(__file__).parent / "static"


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored
    model: str | None = None
    messages: list[Message]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    seed: int | None = None
    stream: bool = False


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code


def _error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}},
                        status_code=status)


class _Slots:
    """Counts requests in flight; refuses past the limit instead of queueing forever."""

    def __init__(self, limit: int):
        self.limit, self.n, self.lock = limit, 0, threading.Lock()

    def acquire(self) -> bool:
        with self.lock:
            if self.n >= self.limit:
                return False
            self.n += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.n -= 1


def create_app(engine: Engine, model_name: str, cfg: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving `engine` under the model id `model_name`."""
    cfg = cfg or ServeConfig()
    app = FastAPI(title="crawl2chat", version="0.1.0")
    slots = _Slots(cfg.max_concurrent)
    model_lock = threading.Lock()  # one generation at a time on the shared model
    created = int(time.time())
    tok = engine.tokenizer

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError):
        return _error(e.status, e.message, e.type, e.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return _error(400, f"invalid request: {where}: {first.get('msg', 'bad value')}", "invalid_request_error")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "in_flight": slots.n,
                "limits": {"max_prompt_tokens": cfg.max_prompt_tokens, "max_tokens": cfg.max_tokens,
                           "default_max_tokens": cfg.default_max_tokens, "max_concurrent": cfg.max_concurrent},
                "defaults": {"temperature": cfg.temperature}}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                             "owned_by": "crawl2chat"}]}

    def _prepare(req: ChatRequest) -> tuple[list[int], dict]:
        if not req.messages:
            raise APIError(400, "messages must not be empty")
        msgs = []
        for i, m in enumerate(req.messages):
            role = "system" if m.role == "developer" else m.role
            if role not in ("system", "user", "assistant"):
                raise APIError(400, f"messages[{i}].role {m.role!r} is not supported; use system, user or assistant")
            msgs.append({"role": role, "content": m.text()})
        chars = sum(len(m["content"]) for m in msgs)
        if chars > cfg.max_prompt_tokens * 16:  # refuse huge bodies before tokenizing them
            raise APIError(413, f"prompt of {chars} characters exceeds the limit of {cfg.max_prompt_tokens} tokens",
                           code="context_length_exceeded")
        ids = render_prompt(tok, msgs)
        if len(ids) > cfg.max_prompt_tokens:
            raise APIError(413, f"prompt is {len(ids)} tokens; the limit is {cfg.max_prompt_tokens}",
                           code="context_length_exceeded")
        if len(ids) >= engine.max_context:
            raise APIError(413, f"prompt is {len(ids)} tokens; the model's context holds {engine.max_context}",
                           code="context_length_exceeded")
        max_tokens = req.max_completion_tokens or req.max_tokens or cfg.default_max_tokens
        if not 1 <= max_tokens <= cfg.max_tokens:
            raise APIError(400, f"max_tokens must be between 1 and {cfg.max_tokens}, got {max_tokens}")
        if req.n > cfg.max_n:
            raise APIError(400, f"n must be at most {cfg.max_n}, got {req.n}")
        if req.stream and req.n != 1:
            raise APIError(400, "streaming supports n=1 only")
        kw = dict(max_new_tokens=max_tokens,
                  temperature=cfg.temperature if req.temperature is None else req.temperature,
                  top_k=req.top_k or cfg.top_k, top_p=req.top_p or cfg.top_p,
                  seed=req.seed if req.seed is not None else int(time.time_ns() % 2**31),
                  tool_budget=cfg.tool_budget)
        return ids, kw

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest):
        ids, kw = _prepare(req)
        if not slots.acquire():
            raise APIError(429, f"server busy: {cfg.max_concurrent} requests in flight; retry shortly",
                           "rate_limit_error", "too_many_requests")
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        if req.stream:
            # Start the generator now: a started generator runs its `finally` (freeing
            # the slot) when dropped, even if the client leaves before reading.
            gen = _sse(rid, now, ids, kw)
            first = next(gen)
            return StreamingResponse(itertools.chain([first], gen), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            def work():
                with model_lock:
                    return engine.generate([ids], num_samples=req.n, **kw)
            comps = await run_in_threadpool(work)
        finally:
            slots.release()
        return {
            "id": rid, "object": "chat.completion", "created": now, "model": model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": _finish(c.finish_reason)} for i, c in enumerate(comps)],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": sum(len(c.tokens) for c in comps),
                      "total_tokens": len(ids) + sum(len(c.tokens) for c in comps)},
        }

    def _sse(rid: str, now: int, ids: list[int], kw: dict):
        """Sync generator (Starlette runs it in a thread): OpenAI chunk events, then [DONE]."""
        def chunk(delta: dict, finish: str | None = None) -> str:
            body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            with model_lock:
                finish = "length"
                for ev in engine.stream(ids, **kw):
                    if ev.text:
                        yield chunk({"content": ev.text})
                    if ev.finish_reason:
                        finish = ev.finish_reason
                yield chunk({}, _finish(finish))
            yield "data: [DONE]\n\n"
        finally:
            slots.release()

    return app


def _finish(reason: str) -> Literal["stop", "length"]:
    return "stop" if reason == "stop" else "length"  # OpenAI has no "context"; it is a length limit
