"""`crawl2chat chat`: the session logic and the real command in a subprocess, on the toy model."""
import subprocess
import sys

import pytest

from crawl2chat.commands.chat import ChatSession
from lm.engine import load_engine


@pytest.fixture(scope="module")
def session(toy_model_dir):
    engine, _ = load_engine(str(toy_model_dir))
    return ChatSession(engine, temperature=0.0, top_k=None, max_tokens=40)


def test_commands(session):
    assert session.command("/temp 0.3") == "(temperature = 0.3)" and session.temperature == 0.3
    assert session.command("/top_p 0.9") == "(top_p = 0.9)" and session.top_p == 0.9
    assert session.command("/top_p 1") == "(top_p = off)" and session.top_p is None
    assert session.command("/top_p 7").startswith("(top_p must be")
    assert session.command("/top_p 1e-300").startswith("(top_p must be")  # float32 would mask every token
    assert session.command("/temp 1e-45").startswith("(temperature must be") and session.temperature == 0.3
    assert session.command("/temp nan").startswith("(temperature must be")
    assert session.command("/temp abc") == "(bad value 'abc' for /temp)"
    assert session.command("/nope").startswith("(unknown command")
    assert session.command("/quit") is None
    session.command("/temp 0")


def test_multi_turn_and_reset(session):
    session.command("/reset")
    first = "".join(session.reply("What is 12+7?"))
    assert first and [m["role"] for m in session.messages] == ["user", "assistant"]
    assert session.messages[1]["content"] == first
    tokens_msg = session.command("/tokens")
    n1 = int(tokens_msg.split("conversation: ")[1].split()[0])
    "".join(session.reply("And 40+2?"))
    n2 = int(session.command("/tokens").split("conversation: ")[1].split()[0])
    assert n2 > n1 and len(session.messages) == 4
    assert session.command("/reset") == "(new conversation)" and session.messages == []
    # greedy and history-free again: the same first reply
    assert "".join(session.reply("What is 12+7?")) == first


def test_context_full_is_a_clear_message(session):
    session.command("/reset")
    with pytest.raises(ValueError, match="fills the model's context"):
        list(session.reply("word " * 400))
    assert session.messages == []


def test_chat_command_subprocess(toy_model_dir):
    proc = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(toy_model_dir),
                           "--temperature", "0", "--max-tokens", "30"],
                          input="What is 12+7?\n/tokens\n/temp 0.5\n/quit\n", capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "bot> " in out and "(conversation:" in out and "(temperature = 0.5)" in out
    # the toy model's calculator call is shown as [call → result], not as raw markup (no tty: no ANSI)
    assert " → " in out and "<|tool_start|>" not in out and "\x1b[" not in out


def test_tool_display_dims_calls_on_a_terminal():
    from crawl2chat.commands.chat import ToolDisplay

    pieces = ["Let me run it. ", "<|tool_start|>", "python: print(1)", "<|tool_end|>", "<|output_start|>", "1",
              "<|output_end|>", "It is 1."]
    plain = ToolDisplay(dim=False)
    assert "".join(plain.feed(p) for p in pieces) == "Let me run it. [python: print(1) → 1] It is 1."
    tty = ToolDisplay(dim=True)
    shown = "".join(tty.feed(p) for p in pieces)
    assert shown == "Let me run it. \x1b[2m[python: print(1) → 1]\x1b[0m It is 1."
    cut = ToolDisplay(dim=True)
    assert "".join(cut.feed(p) for p in pieces[:3]) + cut.end() == "Let me run it. \x1b[2m[python: print(1)\x1b[0m"


def test_chat_command_bad_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(tmp_path / "nope")],
                          input="", capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "not found" in proc.stderr


def test_reply_cut_by_the_context_says_so_and_offers_a_larger_one(toy_model_dir):
    from lm.engine import render_prompt

    probe, _ = load_engine(str(toy_model_dir))
    n_prompt = len(render_prompt(probe.tokenizer, [{"role": "user", "content": "What is 12+7?"}]))
    engine, _ = load_engine(str(toy_model_dir), max_context=n_prompt + 1)  # room for one reply token
    s = ChatSession(engine, temperature=0.0, top_k=None, max_tokens=40)
    pieces = list(s.reply("What is 12+7?"))
    assert s.last_reply_tokens == len(pieces) == 1 and s.last_finish == "context"
    note = s.context_note()
    assert f"context of {n_prompt + 1} tokens" in note and "--context" in note
    assert str(engine.model.rotary_len) in note
    # a reply that ends on its own (or at --max-tokens) gets no note
    roomy = ChatSession(probe, temperature=0.0, top_k=None, max_tokens=3)
    list(roomy.reply("What is 12+7?"))
    assert roomy.last_finish in ("stop", "length") and roomy.context_note() is None


def test_chat_persona_and_tools_subprocess(toy_model_dir):
    """`chat --persona --tools calculator,python`: the system message names the enabled tools, in the
    registry's order; the conversation starts with it (more tokens than without)."""
    cmd = [sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(toy_model_dir), "--temperature", "0",
           "--max-tokens", "8"]
    script = "/system\n/tools\n/tokens\n/quit\n"
    plain = subprocess.run([*cmd, "--tools", ""], input=script, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([*cmd, "--persona", "--tools", "python,calculator"], input=script, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and plain.returncode == 0, proc.stderr + plain.stderr
    assert ("(system: You are crawl2chat, an assistant made by the crawl2chat project. "
            "Tools: calculator, python.)") in proc.stdout
    assert "(tools: calculator, python)" in proc.stdout
    assert "(no system message" in plain.stdout and "(no tools)" in plain.stdout

    def tokens(out):
        return int(out.split("(conversation: ")[1].split()[0])
    assert tokens(proc.stdout) > tokens(plain.stdout)
