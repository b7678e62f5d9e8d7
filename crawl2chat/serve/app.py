"""Web chat + OpenAI-compatible API over one `lm.engine.Engine`.

Routes:
  GET  /                       one-page chat (static/index.html), streams replies
  GET  /v1/models              the one model served
  POST /v1/chat/completions    OpenAI Chat Completions, `stream` true (SSE) or false
  GET  /health                 status, limits, the enabled tools

Tools: the engine's registry (by default the tools the checkpoint was trained to
call) runs every tool call; a request narrows it with `tool_choice: "none"` or
`tools_enabled: [names]`. A reply's `content` is only its text, never chat
markup; its tool calls travel in the extension field `tool_runs`
(`[{"call", "result"}]` on the message; streamed as a delta `tool_run`), which
the web page folds under the reply. `role: system` messages are honoured, and
`ServeConfig.system_prompt` is used for requests that bring none.

Conversation memory (lm.engine.fit_conversation): a history longer than the
model's context keeps its system message and newest whole turns; the response's
extension field `context` says how many of the client's messages were left out
(`dropped_messages`, `dropped_turns`), and the web page draws a line there.

Auth: with an API key (`create_app(..., api_key=...)`) every `/v1/*` request
needs `Authorization: Bearer <key>` (401 otherwise, compared in constant time,
checked before the body is read); `/` and `/health` stay open (the page asks
for the key). docs/SERVING.md has the threat model.

Limits, with OpenAI-style error bodies: body over `max_body_bytes` (Content-Length
or bytes actually sent) → 413 before any parsing; a newest message that cannot
fit the context or `max_prompt_tokens` → 413 (older turns are dropped, never
refused); any field outside the range the engine can use (wrong
type, NaN, temperature/top_p under their floors, seed out of range, non-text
content part, lone surrogate, max_tokens < 1) → 400 naming the field; more than
`max_concurrent` requests in flight → 429; past `request_timeout_s` → 504 (or an
SSE error event); shutting down → 503.

How a request runs: parsing and tokenizing happen in a worker thread, so the event
loop (and /health) never waits on them. An admitted request takes a slot, then
its own daemon thread waits for the model lock and generates, checking once per
token whether to stop: the client went away (the ASGI `http.disconnect`, watched
for the whole request, streamed or not), the deadline passed, or the server is
shutting down (`shutdown()`, called on SIGINT/SIGTERM). The thread frees the
model lock and the slot itself when it ends, so nothing a client does can leave
either held.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator
from starlette.requests import ClientDisconnect

from conf.serve import ServeConfig
from lm.engine import (MAX_TEMPERATURE, MIN_TEMPERATURE, MIN_TOP_P, ContextError, Engine, FittedPrompt, ReplyReader,
                       fit_conversation, read_reply, reply_suffix, visible_reply)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
DRAIN_BYTES = 64 << 20  # an oversized body is read (and dropped) up to this, so the client sees its 413
DRAIN_SECONDS = 2.0


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored
    model: str | None = None
    messages: list[Message]
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE, strict=True, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=MIN_TOP_P, le=1.0, strict=True, allow_inf_nan=False)
    top_k: StrictInt | None = Field(None, ge=1, le=1 << 24)
    n: StrictInt = Field(1, ge=1)
    seed: StrictInt | None = Field(None, ge=-(1 << 63), le=(1 << 64) - 1)  # torch.Generator's range
    stream: StrictBool | None = False
    tool_choice: str | dict | None = None  # OpenAI: "none" turns tools off for this request
    tools_enabled: list[str] | None = None  # extension: the enabled tools this request may use

    @field_validator("temperature")
    @classmethod
    def _temperature_floor(cls, v: float | None) -> float | None:
        if v is not None and 0 < v < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}")
        return v


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")  # json.loads would accept NaN / Infinity


def _validation_message(e: ValidationError) -> str:
    first = e.errors()[0] if e.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()))
    msg = first.get("msg", "bad value").removeprefix("Value error, ")
    return f"invalid request: {where or 'body'}: {msg}"


class _Job:
    """One admitted request: deadline, why it stopped early, and what its worker thread produced."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float):
        self.loop, self.deadline = loop, time.monotonic() + timeout_s
        self.reason: str | None = None  # "client" | "deadline" | "shutdown" once told to stop
        self.done = asyncio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.items: asyncio.Queue = asyncio.Queue()  # stream events, then _END

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def should_stop(self) -> bool:
        if self.reason is None and time.monotonic() > self.deadline:
            self.reason = "deadline"
        return self.reason is not None

    def emit(self, item: Any) -> None:
        """Hand an item to the event loop from the worker thread (dropped if the loop is gone)."""
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:
            pass


_END = object()


class Runner:
    """Admits requests (slots), runs each in a daemon thread under the one model lock, cancels them."""

    def __init__(self, limit: int, timeout_s: float):
        self.limit, self.timeout_s = limit, timeout_s
        self.model_lock = threading.Lock()
        self._lock = threading.Lock()
        self.jobs: set[_Job] = set()
        self.closing = False

    @property
    def in_flight(self) -> int:
        return len(self.jobs)

    def admit(self) -> _Job:
        with self._lock:
            if self.closing:
                raise APIError(503, "server is shutting down", "server_error", "shutting_down")
            if len(self.jobs) >= self.limit:
                raise APIError(429, f"server busy: {self.limit} requests in flight; retry shortly",
                               "rate_limit_error", "too_many_requests")
            job = _Job(asyncio.get_running_loop(), self.timeout_s)
            self.jobs.add(job)
            return job

    def start(self, job: _Job, work: Callable[[], Any]) -> None:
        threading.Thread(target=self._run, args=(job, work), name="generate", daemon=True).start()

    def _run(self, job: _Job, work: Callable[[], Any]) -> None:
        held = False
        try:
            while not held:  # wait for the model, but give up as soon as the request is stopped
                if job.should_stop():
                    return
                held = self.model_lock.acquire(timeout=0.05)
            if not job.should_stop():
                job.result = work()
        except BaseException as e:  # reported to the client as a 500 and logged
            job.error = e
        finally:
            if held:
                self.model_lock.release()
            with self._lock:
                self.jobs.discard(job)
            job.emit(_END)
            try:
                job.loop.call_soon_threadsafe(job.done.set)
            except RuntimeError:
                pass

    def shutdown(self) -> None:
        """Refuse new requests and stop every running one within a token (safe from a signal handler)."""
        self.closing = True
        for job in list(self.jobs):
            job.stop("shutdown")


async def _wait_disconnect(receive) -> None:
    """Returns when the client has gone (ASGI `http.disconnect`); the body must already be read."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _stop_error(job: _Job, timeout_s: float) -> APIError:
    if job.reason == "deadline":
        return APIError(504, f"generation exceeded the server's deadline of {timeout_s:g} s; ask for fewer tokens",
                        "timeout_error", "timeout")
    return APIError(503, "server is shutting down", "server_error", "shutting_down")


class _SSEResponse(Response):
    """OpenAI chunk events from a job's queue; stops the job as soon as the client disconnects."""

    media_type = "text/event-stream"

    def __init__(self, job: _Job, chunk: Callable[..., str], timeout_s: float):
        # No Response.__init__: it would declare a Content-Length of the (empty) content.
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no")]
        self.job, self.chunk, self.timeout_s = job, chunk, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        job = self.job
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._send(send, self.chunk({"role": "assistant", "content": ""}))
            finish = None
            while True:
                get = asyncio.ensure_future(job.items.get())
                await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    job.stop("client")
                    return
                ev = get.result()
                if ev is _END:
                    break
                kind, value = ev
                if kind == "text" and value:
                    await self._send(send, self.chunk({"content": value}))
                elif kind in ("tool_call", "tool_result"):
                    # the ToolRun object is shared with the generating thread, which fills in its result:
                    # a "tool_call" event is the call alone, whenever this coroutine gets to send it
                    result = None if kind == "tool_call" else value.result
                    await self._send(send, self.chunk({"tool_run": {"call": value.call, "result": result}}))
                elif kind == "finish":
                    finish = value
            if finish is None:  # stopped before the end: say why, the OpenAI way (an error event)
                err = (APIError(500, "internal error while generating", "server_error") if job.error
                       else _stop_error(job, self.timeout_s))
                if job.error:
                    log.error("generation failed", exc_info=job.error)
                await self._send(send, f"data: {json.dumps(err.body())}\n\n")
            else:
                await self._send(send, self.chunk({}, _finish(finish)))
            await self._send(send, "data: [DONE]\n\n")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            job.stop("client")  # no-op when it already ended; stops it when we were cancelled
            gone.cancel()

    @staticmethod
    async def _send(send, text: str) -> None:
        await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


class BearerAuth:
    """ASGI middleware: every `/v1/*` request must carry `Authorization: Bearer <key>` (else 401).

    Pure ASGI (not BaseHTTPMiddleware), so streaming and disconnect detection are
    untouched; the check runs before the app reads the body, and compares in
    constant time (hmac.compare_digest) so response timing says nothing of the key.
    """

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
            given = b""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    given = value
                    break
            scheme, _, token = given.partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)):
                msg = ("missing API key: send the header Authorization: Bearer <key>" if not given
                       else "invalid API key")
                body = json.dumps(APIError(401, msg, code="invalid_api_key").body()).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_app(engine: Engine, model_name: str, cfg: ServeConfig | None = None, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving `engine` under the model id `model_name`; `app.state.shutdown()` stops it.

    `api_key`: when set, every /v1/* request needs it as a Bearer token (BearerAuth).
    """
    cfg = cfg or ServeConfig()
    if api_key is not None and not api_key.strip():
        raise ValueError("the API key is empty")
    runner = Runner(cfg.max_concurrent, cfg.request_timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        runner.shutdown()

    app = FastAPI(title="crawl2chat", version="0.1.0", lifespan=lifespan)
    if api_key is not None:
        app.add_middleware(BearerAuth, key=api_key.strip())
    app.state.runner = runner
    app.state.shutdown = runner.shutdown
    created = int(time.time())
    tok = engine.tokenizer

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health():
        return {"status": "shutting_down" if runner.closing else "ok", "model": model_name,
                "in_flight": runner.in_flight,
                "limits": {"max_prompt_tokens": cfg.max_prompt_tokens, "max_tokens": cfg.max_tokens,
                           "default_max_tokens": cfg.default_max_tokens, "max_concurrent": cfg.max_concurrent,
                           "max_body_bytes": cfg.max_body_bytes, "request_timeout_s": cfg.request_timeout_s},
                "defaults": {"temperature": cfg.temperature}, "context": engine.max_context,
                "tools": engine.tools.names if engine.tools is not None else [],
                "tool_budget": cfg.tool_budget, "system_prompt": cfg.system_prompt is not None,
                "auth": api_key is not None}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                             "owned_by": "crawl2chat"}]}

    async def _read_body(request: Request) -> bytes:
        """The body, refused with 413 past `max_body_bytes` before anything is parsed."""
        limit = cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            raise APIError(400, "invalid Content-Length header")
        over = declared is not None and int(declared) > limit
        body, total, until = bytearray(), 0, time.monotonic() + DRAIN_SECONDS
        try:
            async for piece in request.stream():
                total += len(piece)
                over = over or total > limit
                if not over:
                    body += piece
                elif total > limit + DRAIN_BYTES or time.monotonic() > until:
                    break  # a hostile sender: answer now and let the connection drop
        except ClientDisconnect:
            raise APIError(499, "client closed the connection while sending the body") from None
        if over:
            size = f"{int(declared)} bytes" if declared is not None else f"over {limit} bytes"
            raise APIError(413, f"request body of {size} exceeds the limit of {limit} bytes",
                           code="request_too_large")
        return bytes(body)

    def _prepare(body: bytes) -> tuple[ChatRequest, FittedPrompt, dict]:
        """Parse, validate and tokenize a request (runs in a worker thread)."""
        try:
            data = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise APIError(400, f"invalid JSON body: {e}") from None
        try:
            req = ChatRequest.model_validate(data)
        except ValidationError as e:
            raise APIError(400, _validation_message(e)) from None
        if not req.messages:
            raise APIError(400, "messages must not be empty")
        msgs = []
        for i, m in enumerate(req.messages):
            role = "system" if m.role == "developer" else m.role
            if role not in ("system", "user", "assistant"):
                raise APIError(400, f"messages[{i}].role {m.role!r} is not supported; use system, user or assistant")
            if isinstance(m.content, list):  # OpenAI content parts: text only, each with its text
                for j, p in enumerate(m.content):
                    if p.type != "text" or p.text is None:
                        raise APIError(400, f"messages[{i}].content[{j}] must be a text part "
                                            f"({{\"type\": \"text\", \"text\": \"...\"}}); got type {p.type!r}")
                text = "".join(p.text for p in m.content)
            else:
                text = m.content or ""
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise APIError(400, f"messages[{i}].content is not valid Unicode (lone surrogate at character "
                                    f"{e.start}); send UTF-8 text") from None
            msgs.append({"role": role, "content": text})
        max_tokens = next((v for v in (req.max_completion_tokens, req.max_tokens) if v is not None),
                          cfg.default_max_tokens)
        if not 1 <= max_tokens <= cfg.max_tokens:
            raise APIError(400, f"max_tokens must be between 1 and {cfg.max_tokens}, got {max_tokens}")
        if req.n > cfg.max_n:
            raise APIError(400, f"n must be at most {cfg.max_n}, got {req.n}")
        if req.stream and req.n != 1:
            raise APIError(400, "streaming supports n=1 only")
        # The one memory policy: oldest whole turns are dropped; only a newest message too long alone is a 413.
        try:
            fitted = fit_conversation(tok, msgs, engine.max_context, max_tokens, system=cfg.system_prompt,
                                      max_prompt_tokens=cfg.max_prompt_tokens)
        except ContextError as e:
            raise APIError(413, str(e), code="context_length_exceeded") from None
        except ValueError as e:
            raise APIError(400, str(e)) from None
        kw = dict(max_new_tokens=max_tokens,  # the engine caps it at the room the prompt leaves
                  temperature=cfg.temperature if req.temperature is None else req.temperature,
                  top_k=req.top_k or cfg.top_k, top_p=req.top_p or cfg.top_p,
                  seed=req.seed if req.seed is not None else int(time.time_ns() % 2**31),
                  tool_budget=cfg.tool_budget, tools=_request_tools(req), min_tokens=1)
        return req, fitted, kw

    def _context(fitted: FittedPrompt) -> dict:
        """The extension field `context`: the model's window and what of the conversation it did not see."""
        return {"tokens": fitted.context, "prompt_tokens": len(fitted.ids),
                "dropped_messages": fitted.dropped_messages, "dropped_turns": fitted.dropped_turns,
                "note": fitted.note()}

    def _request_tools(req: ChatRequest):
        """The engine's registry, narrowed to what this request asks for (None: no tools)."""
        if req.tool_choice == "none" or engine.tools is None:
            return None
        if req.tools_enabled is None:
            return engine.tools
        try:
            return engine.tools.only(req.tools_enabled)
        except ValueError as e:
            raise APIError(400, f"tools_enabled: {e}") from None

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _read_body(request)
        req, fitted, kw = await anyio.to_thread.run_sync(_prepare, body)
        ids = fitted.ids
        job = runner.admit()
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        if req.stream:
            def stream_work():
                # What the client sees is read here, token by token: text, tool runs, never markup.
                events = engine.stream(ids, **kw)
                reader = ReplyReader(tok)
                try:
                    for ev in events:
                        for item in reader.feed(ev.token):
                            job.emit(item)
                        if ev.finish_reason:
                            for item in reader.close(ev.finish_reason):
                                job.emit(item)
                            job.emit(("text", reply_suffix(reader)))
                            job.emit(("finish", ev.finish_reason))
                        if job.should_stop():
                            return
                finally:
                    events.close()

            first = [True]

            def chunk(delta: dict, finish: str | None = None) -> str:
                data = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                if first[0]:  # the first chunk says what of the conversation the model sees
                    data["context"], first[0] = _context(fitted), False
                return f"data: {json.dumps(data)}\n\n"

            runner.start(job, stream_work)
            return _SSEResponse(job, chunk, cfg.request_timeout_s)

        runner.start(job, lambda: engine.generate([ids], num_samples=req.n, should_stop=job.should_stop, **kw))
        gone = asyncio.ensure_future(_wait_disconnect(request.receive))
        done = asyncio.ensure_future(job.done.wait())
        try:
            await asyncio.wait({gone, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not done.done():  # the client left (or we were cancelled): stop generating for nobody
                job.stop("client")
            gone.cancel()
            done.cancel()
        if not job.done.is_set():
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
        if job.error is not None:
            log.error("generation failed", exc_info=job.error)
            raise APIError(500, "internal error while generating", "server_error")
        if job.result is None or job.reason is not None:
            raise _stop_error(job, cfg.request_timeout_s)
        comps = job.result
        choices = []
        for i, c in enumerate(comps):
            reader = read_reply(tok, c.tokens, c.finish_reason)
            choices.append({"index": i, "message": {"role": "assistant", "content": visible_reply(reader),
                                                    "tool_runs": [{"call": r.call, "result": r.result}
                                                                  for r in reader.runs]},
                            "finish_reason": _finish(c.finish_reason)})
        return {
            "id": rid, "object": "chat.completion", "created": now, "model": model_name, "choices": choices,
            "usage": {"prompt_tokens": len(ids), "completion_tokens": sum(len(c.tokens) for c in comps),
                      "total_tokens": len(ids) + sum(len(c.tokens) for c in comps)},
            "context": _context(fitted),
        }

    return app


def _finish(reason: str) -> Literal["stop", "length"]:
    return "stop" if reason == "stop" else "length"  # OpenAI has no "context"; it is a length limit
