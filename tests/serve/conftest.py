"""A live local server over a toy model (lm/toy.py: GENERATED conversations + real text)."""
import socket
import threading
import time

import pytest
import uvicorn

from conf.serve import ServeConfig
from crawl2chat.serve.app import create_app
from lm.engine import load_engine
from lm.toy import make_toy_checkpoint

MODEL_ID = "crawl2chat-toy"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory):
    return make_toy_checkpoint(tmp_path_factory.getbasetemp() / "toy-model", steps=150)


@pytest.fixture(scope="session")
def server(toy_model_dir):
    """Base URL of a uvicorn server on 127.0.0.1 (stopped at session end)."""
    engine, _ = load_engine(str(toy_model_dir))
    cfg = ServeConfig(port=_free_port(), max_prompt_tokens=100, max_tokens=64, max_concurrent=1,
                      default_max_tokens=40)
    srv = uvicorn.Server(uvicorn.Config(create_app(engine, MODEL_ID, cfg), host=cfg.host, port=cfg.port,
                                        log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 60
    while not srv.started:
        if time.time() > deadline or not t.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    yield f"http://{cfg.host}:{cfg.port}"
    srv.should_exit = True
    t.join(timeout=10)
