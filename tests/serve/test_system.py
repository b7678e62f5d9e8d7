"""System messages and tools over real HTTP: `serve --persona/--system/--tools` (the real command in a
subprocess) and `role: system` / `tool_choice` / `tools_enabled` per request; plain OpenAI clients unchanged."""
import httpx
import openai

from lm.chat import render_prompt
from lm.engine import load_engine

MSG = [{"role": "user", "content": "What is 12+7?"}]


def _prompt_tokens(url: str, messages: list[dict], **extra) -> int:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                   json={"messages": messages, "max_tokens": 1, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"]


def test_serve_with_persona_and_python_tool(toy_model_dir, free_port):
    from tests.support.serve import start_server

    tok = load_engine(str(toy_model_dir))[0].tokenizer
    proc, url = start_server(toy_model_dir, free_port, "--persona", "--tools", "calculator,python",
                             "--max-tokens", "40")
    try:
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["tools"] == ["calculator", "python"] and health["system_prompt"] is True
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
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={"messages": MSG, "max_tokens": 1,
                                                                       "tools_enabled": ["search"]})
        assert r.status_code == 400 and "tools_enabled" in r.json()["error"]["message"]
        # a plain OpenAI client (it sends its own `tools` schema list, which is ignored) still gets answers
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
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
        return r.json()["choices"][0]["message"]["content"]

    engine = load_engine(str(toy_model_dir))[0]
    ids = render_prompt(MSG, engine.tokenizer)
    local = {name: engine.generate([ids], 40, temperature=0, tools=t)[0].text
             for name, t in (("tools", engine.tools), ("none", None))}
    assert local["tools"] != local["none"]  # the toy calls its calculator; unanswered, it makes up the output
    assert reply() == local["tools"] and reply(tool_choice="none") == local["none"]
