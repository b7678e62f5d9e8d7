"""A live local server over a toy model (tests/support/toy.py: GENERATED conversations + real text)."""
import contextlib
import socket
import threading
import time

import pytest
import torch
import uvicorn

from conf.serve import ServeConfig
from crawl2chat.serve.app import create_app
from lm.engine import load_engine
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint

MODEL_ID = "crawl2chat-toy"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory):
    return make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)


@contextlib.contextmanager
def running_server(engine, cfg: ServeConfig, api_key: str | None = None):
    """Base URL of a uvicorn server for `engine` on 127.0.0.1, stopped on exit."""
    app = create_app(engine, MODEL_ID, cfg, api_key=api_key)
    srv = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                        timeout_graceful_shutdown=2))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 60
    while not srv.started:
        if time.time() > deadline or not t.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{cfg.host}:{cfg.port}"
    finally:
        app.state.shutdown()
        srv.should_exit = True
        t.join(timeout=10)


@pytest.fixture(scope="session")
def server(toy_model_dir):
    """Base URL of a uvicorn server on 127.0.0.1 (stopped at session end)."""
    engine, _ = load_engine(str(toy_model_dir))
    cfg = ServeConfig(port=_free_port(), max_prompt_tokens=100, max_tokens=64, max_concurrent=1,
                      default_max_tokens=40)
    with running_server(engine, cfg) as url:
        yield url


@pytest.fixture(scope="session")
def persona_model_dir(toy_model_dir, tmp_path_factory):
    """The toy checkpoint as if SFT had taught it a persona with calculator, python and search calls
    (a copy whose config.json records them, tasks/posttrain.py's way; the weights are the toy's)."""
    import json
    import shutil

    out = tmp_path_factory.getbasetemp() / "persona-model"
    if not out.exists():
        shutil.copytree(toy_model_dir, out)
        cfg = json.loads((out / "config.json").read_text())
        cfg["persona"] = {"name": "Toy", "maker": "the tests", "tools": ["search", "python", "calculator"]}
        (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="session")
def endless_model_dir(toy_model_dir, tmp_path_factory):
    """A GENERATED model that never stops: it emits "a" for every token, up to an 8192-token context.

    Every embedding is the ones vector and the residual projections start at zero, so
    the final hidden state is the same for every position; the head scores only "a".
    Streams from it last as long as a test needs (max_tokens), so disconnects,
    deadlines and shutdown are tested against generation that is really running.
    """
    from lm.checkpoint import save_checkpoint
    from lm.model import GPT, GPTConfig
    from lm.tokenizer import Tokenizer

    tok = Tokenizer.load(toy_model_dir / "tokenizer.json")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=8192, n_layer=2, n_head=2, n_kv_head=2, n_embd=64))
    with torch.no_grad():
        model.transformer.wte.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[tok.encode("a")[0]] = 1.0
    return save_checkpoint(tmp_path_factory.getbasetemp() / "endless-model", model, tok, {"kind": "endless-generated"})


@pytest.fixture(scope="session")
def start_server():
    """`running_server(engine, cfg)` for tests that need a server with their own limits."""
    return running_server


@pytest.fixture
def free_port() -> int:
    return _free_port()
