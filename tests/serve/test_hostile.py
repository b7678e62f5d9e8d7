"""The server under an adversarial client: dropped streams, hostile values, big bodies, deadlines, shutdown.

Real uvicorn on 127.0.0.1, real HTTP (httpx, raw sockets). Long generations come
from the GENERATED endless model (conftest.py), which never emits a stop token.
"""
import json
import signal
import socket
import threading
import time

import httpx
import pytest

from conf.serve import ServeConfig
from lm.engine import load_engine

MSG = [{"role": "user", "content": "hi"}]
LONG = {"messages": MSG, "max_tokens": 8000, "temperature": 0}  # minutes of generation if nothing stops it
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def endless(endless_model_dir, start_server):
    engine, _ = load_engine(str(endless_model_dir))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServeConfig(port=port, max_prompt_tokens=100, max_tokens=8000, max_concurrent=2,
                      request_timeout_s=TIMEOUT_S)
    with start_server(engine, cfg) as url:
        yield url


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()


def _wait_idle(url: str, within: float) -> float:
    """Seconds until no request is in flight; fails past `within`."""
    t0 = time.monotonic()
    while _health(url)["in_flight"]:
        assert time.monotonic() - t0 < within, f"requests still in flight after {within} s: {_health(url)}"
        time.sleep(0.05)
    return time.monotonic() - t0


def _normal_request(url: str) -> httpx.Response:
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": MSG, "max_tokens": 3}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_stream_dropped_mid_reply_frees_slot_and_model(endless):
    for _ in range(3):  # more than max_concurrent: a leaked slot would show as 429
        with httpx.Client(timeout=30) as h, h.stream("POST", f"{endless}/v1/chat/completions",
                                                     json={**LONG, "stream": True}) as r:
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data:")
                if events == 3:
                    assert _health(endless)["in_flight"] == 1
                    break  # leaving iter_lines closes the response: the client hangs up mid-reply
        assert _wait_idle(endless, within=3) < 3  # cancelled within a token or two, not after 4000
    _normal_request(endless)


def test_stream_dropped_before_reading(endless):
    body = json.dumps({**LONG, "stream": True}).encode()
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    host, port = endless.removeprefix("http://").split(":")
    for _ in range(5):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(req)
        time.sleep(0.05)
    _wait_idle(endless, within=5)
    _normal_request(endless)


def test_non_streamed_client_leaving_cancels_generation(endless):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{endless}/v1/chat/completions", json=LONG, timeout=1.0)
    _wait_idle(endless, within=3)
    _normal_request(endless)


def test_deadline_ends_long_requests(endless):
    t0 = time.monotonic()
    r = httpx.post(f"{endless}/v1/chat/completions", json=LONG, timeout=60)
    assert r.status_code == 504 and "deadline" in r.json()["error"]["message"]
    assert time.monotonic() - t0 < TIMEOUT_S + 3
    with httpx.Client(timeout=60) as h, h.stream("POST", f"{endless}/v1/chat/completions",
                                                 json={**LONG, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert time.monotonic() - t0 < 2 * TIMEOUT_S + 6
    err = json.loads(lines[-2].removeprefix("data: "))
    assert lines[-1] == "data: [DONE]" and "deadline" in err["error"]["message"]
    assert len(lines) > 3  # tokens did stream before the deadline


def test_health_answers_fast_while_generating(endless):
    with httpx.Client(timeout=30) as h, h.stream("POST", f"{endless}/v1/chat/completions",
                                                 json={**LONG, "stream": True}) as r:
        lines = r.iter_lines()
        next(lines)
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            assert _health(endless)["in_flight"] == 1
            worst = max(worst, time.monotonic() - t0)
    assert worst < 1.0, f"/health took {worst:.2f} s during generation"
    _wait_idle(endless, within=3)


def _health_worst(url: str, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        httpx.get(f"{url}/health", timeout=30)
        out.append(time.monotonic() - t0)
        time.sleep(0.02)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_34mb_body_is_413_fast_and_health_unaffected(endless, chunked):
    one = b'{"role":"user","content":"x"},'
    body = b'{"messages":[' + one * 1_150_000 + b'{"role":"user","content":"x"}]}'
    assert len(body) > 34_000_000
    stop, lat = threading.Event(), []
    poller = threading.Thread(target=_health_worst, args=(endless, stop, lat))
    poller.start()
    try:
        content = body if not chunked else (body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20))
        t0 = time.monotonic()
        r = httpx.post(f"{endless}/v1/chat/completions", content=content, timeout=30,
                       headers={"Content-Type": "application/json"})
        took = time.monotonic() - t0
    finally:
        stop.set()
        poller.join()
    assert r.status_code == 413 and "exceeds the limit of 1048576 bytes" in r.json()["error"]["message"]
    assert took < 3.0, f"413 took {took:.1f} s"
    assert lat and max(lat) < 1.0, f"/health took up to {max(lat):.2f} s during the upload"


BAD_VALUES = [
    ({"seed": 2**64}, "seed"),
    ({"seed": True}, "seed"),
    ({"temperature": 1e-45}, "temperature"),
    ({"top_p": 1e-300}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"n": "2"}, "n"),
    ({"stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0] must be a text part"),
    ({"messages": [{"role": 5, "content": "x"}]}, "messages.0.role"),
    ({"messages": "hello"}, "messages"),
]


@pytest.mark.parametrize("fields,needle", BAD_VALUES, ids=[str(f)[:40] for f, _ in BAD_VALUES])
def test_hostile_values_are_400_naming_the_field(server, fields, needle):
    r = httpx.post(f"{server}/v1/chat/completions", json={"messages": MSG, "max_tokens": 3, **fields}, timeout=30)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


@pytest.mark.parametrize("raw,needle", [
    ('{"messages": [{"role": "user", "content": "\\ud800 x"}], "max_tokens": 3}', "lone surrogate"),
    ('{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', "NaN is not valid JSON"),
    ('{"messages": [{"role": "user", "content": "x"}], "top_p": Infinity}', "Infinity is not valid JSON"),
    ('[1, 2]', "body"),
    ('{"messages": [', "invalid JSON"),
    ('[' * 100_000 + ']' * 100_000, "invalid JSON"),
])
def test_hostile_bodies_are_400(server, raw, needle):
    r = httpx.post(f"{server}/v1/chat/completions", content=raw.encode(), timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_edge_values_in_range_work(server):
    for fields in ({"seed": 2**64 - 1}, {"seed": -(2**63)}, {"temperature": 0.01, "top_p": 0.01},
                   {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is 1+1?"}]}]}):
        r = httpx.post(f"{server}/v1/chat/completions", json={"messages": MSG, "max_tokens": 3, **fields}, timeout=30)
        assert r.status_code == 200, (fields, r.text)


def test_sigint_stops_the_server_within_seconds_with_streams_open(endless_model_dir, free_port):
    from tests.support.serve import start_server

    proc, url = start_server(endless_model_dir, free_port, "--max-tokens", "8000", "--max-concurrent", "3",
                             "--request-timeout", "600")
    try:
        clients = [httpx.Client(timeout=30) for _ in range(2)]
        streams = [c.stream("POST", f"{url}/v1/chat/completions", json={**LONG, "stream": True}) for c in clients]
        readers = [s.__enter__().iter_lines() for s in streams]  # kept: a dropped reader closes its stream
        for lines in readers:  # two streams open and generating, never read to the end
            next(lines)
            next(lines)
        assert httpx.get(f"{url}/health", timeout=5).json()["in_flight"] == 2
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=15)
        took = time.monotonic() - t0
        assert rc == 0 and took < 6, f"exit {rc} after {took:.1f} s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
