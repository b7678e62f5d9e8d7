"""System messages, tools and the door over real HTTP: `serve --persona/--system/--tools` and its API key (the
real command in a subprocess), `role: system` / `tool_choice` / `tools_enabled` per request; which tools a
checkpoint gets by default; plain OpenAI clients unchanged."""
import json
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from lm.chat import render_prompt
from lm.engine import load_engine, read_reply, visible_reply

MSG = [{"role": "user", "content": "What is 12+7?"}]
KEY = "test-key-7f3a9c"  # GENERATED for the test


def _prompt_tokens(url: str, messages: list[dict], **extra) -> int:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {KEY}"},
                   json={"messages": messages, "max_tokens": 1, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"]


def test_serve_with_persona_python_tool_and_api_key(toy_model_dir, free_port, monkeypatch):
    """The real `serve` with its key in the environment (never on the command line, so not in `ps`)."""
    from tests.support.serve import start_server

    tok = load_engine(str(toy_model_dir))[0].tokenizer
    monkeypatch.setenv("CRAWL2CHAT_API_KEY", KEY)
    proc, url = start_server(toy_model_dir, free_port, "--persona", "--tools", "calculator,python",
                             "--max-tokens", "40")
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert KEY.encode() not in cmdline
        health = httpx.get(f"{url}/health", timeout=10).json()  # open: the page reads it before asking a key
        assert health["tools"] == ["calculator", "python"] and health["system_prompt"] is True and health["auth"]
        # the door: no key, a wrong key → 401 (the OpenAI client's AuthenticationError)
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="x", messages=MSG, max_tokens=1)
        # no system message in the request: the persona's is prepended (the toy checkpoint records
        # none, so the default persona with the enabled tools)
        persona = "You are crawl2chat, an assistant made by the crawl2chat project. Tools: calculator, python."
        assert _prompt_tokens(url, MSG) == len(render_prompt(MSG, tok, system=persona))
        # role: system from the client replaces it
        own = [{"role": "system", "content": "Answer in French."}, *MSG]
        assert _prompt_tokens(url, own) == len(render_prompt(own, tok))
        # per-request tools: a subset, none, or an unknown one (400 naming it)
        assert _prompt_tokens(url, MSG, tools_enabled=["python"]) > 0
        assert _prompt_tokens(url, MSG, tool_choice="none") > 0
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {KEY}"},
                       json={"messages": MSG, "max_tokens": 1, "tools_enabled": ["search"]})
        assert r.status_code == 400 and "tools_enabled" in r.json()["error"]["message"]
        # a plain OpenAI client with the key (it sends its own `tools` schema list, which is ignored) gets answers
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data]
        c = client.chat.completions.create(model="x", messages=own, temperature=0, max_tokens=20,
                                           tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
        assert c.choices[0].message.role == "assistant" and c.choices[0].finish_reason in ("stop", "length")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_tool_choice_none_turns_tools_off(server, toy_model_dir):
    """On the shared server: each reply is exactly the engine's greedy reply with / without tools."""
    def reply(**extra):
        r = httpx.post(f"{server}/v1/chat/completions", timeout=60,
                       json={"messages": MSG, "max_tokens": 40, "temperature": 0, **extra})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]

    engine = load_engine(str(toy_model_dir))[0]
    ids = render_prompt(MSG, engine.tokenizer)
    local = {}
    for name, t in (("tools", engine.tools), ("none", None)):
        c = engine.generate([ids], 40, temperature=0, tools=t, min_tokens=1)[0]
        local[name] = read_reply(engine.tokenizer, c.tokens, c.finish_reason)
    with_tools, without = reply(), reply(tool_choice="none")
    assert with_tools["content"] == visible_reply(local["tools"])
    assert without["content"] == visible_reply(local["none"])
    # the toy calls its calculator: with tools the result is the calculator's; without, whatever it made up
    assert with_tools["tool_runs"][0]["result"] == local["tools"].runs[0].result
    assert with_tools["tool_runs"] != without["tool_runs"]


def test_serve_refuses_an_open_door(toy_model_dir):
    """A non-loopback address with no key: exit 2, one line, before the model is loaded; a key on the
    command line (visible in `ps`) is refused the same way."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "CRAWL2CHAT_API_KEY"}
    for flags, needle in ((["--host", "0.0.0.0"], "--insecure"), (["--api-key", "abc"], "CRAWL2CHAT_API_KEY")):
        proc = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "serve", "--model", str(toy_model_dir),
                               *flags], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_api_key_sources_and_loopback(tmp_path):
    from argparse import Namespace

    from crawl2chat.commands.serve import api_key, is_loopback

    args = Namespace(api_key=None, api_key_file=None)
    assert api_key(args, {}) is None and api_key(args, {"CRAWL2CHAT_API_KEY": " k1 \n"}) == "k1"
    (tmp_path / "key").write_text("k2\n")
    assert api_key(Namespace(api_key=None, api_key_file=str(tmp_path / "key")), {}) == "k2"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="holds no key"):
        api_key(Namespace(api_key=None, api_key_file=str(tmp_path / "empty")), {})
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))


def test_tools_follow_the_checkpoint(tmp_path):
    """SFT's record (meta persona tools) decides; rl/dpo/rlhf checkpoints inherit it through their parents;
    none anywhere: the calculator. `--tools` overrides; search without an index is left off with a note
    (an explicit `--tools search` without one is refused)."""
    from crawl2chat.serve.setup import choose_tools
    from lm.tools import checkpoint_tools

    sft = tmp_path / "sft" / "final"
    sft.mkdir(parents=True)
    (sft / "config.json").write_text(json.dumps({"kind": "sft", "persona": {"tools": ["python", "calculator"]}}))
    rl = {"kind": "rl", "parent": {"path": str(sft)}, "path": str(tmp_path / "rl" / "final")}
    assert checkpoint_tools({"persona": {"tools": ["search", "calculator"]}}) == ["calculator", "search"]
    assert checkpoint_tools(rl) == ["calculator", "python"]
    assert checkpoint_tools({"kind": "pretrain"}) == ["calculator"]
    assert checkpoint_tools({"persona": {"tools": []}}) == []
    assert choose_tools(None, rl).names == ["calculator", "python"]
    assert choose_tools("", rl).names == [] and choose_tools("python", rl).names == ["python"]
    trained_search = {"persona": {"tools": ["calculator", "search"]}, "path": str(sft)}
    off = choose_tools(None, trained_search)
    assert off.names == ["calculator"] and "--search-index" in off.notes[0]
    with pytest.raises(ValueError, match="needs an index"):
        choose_tools("search", trained_search)
    # the index of the checkpoint's own run (<root>/index, complete) turns search on
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "manifest.json").write_text("{}")
    on = choose_tools(None, trained_search)
    assert on.names == ["calculator", "search"] and on.search_index == str(tmp_path / "index") and not on.notes
    with pytest.raises(ValueError, match="unknown tool"):
        choose_tools("shell", rl)
