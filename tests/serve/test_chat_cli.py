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


def said(session, text: str) -> str:
    """The text of one reply (its tool runs and notes left out)."""
    return "".join(v for k, v in session.reply(text) if k == "text")


def test_multi_turn_and_reset(session):
    session.command("/reset")
    first = said(session, "What is 12+7?")
    assert first and [m["role"] for m in session.messages] == ["user", "assistant"]
    assert session.messages[1]["content"] == first.strip()
    tokens_msg = session.command("/tokens")
    n1 = int(tokens_msg.split("conversation: ")[1].split()[0])
    said(session, "And 40+2?")
    n2 = int(session.command("/tokens").split("conversation: ")[1].split()[0])
    assert n2 > n1 and len(session.messages) == 4
    assert session.command("/reset") == "(new conversation)" and session.messages == []
    # greedy and history-free again: the same first reply
    assert said(session, "What is 12+7?") == first


def test_a_message_too_long_alone_is_a_clear_message(session):
    session.command("/reset")
    with pytest.raises(ValueError, match="shorten the message"):
        list(session.reply("word " * 400))
    assert session.messages == []


def test_temperature_range_is_the_apis():
    from crawl2chat.commands.chat import check_temperature

    assert check_temperature(0) is None and check_temperature(2) is None
    assert "between 0.01 and 2" in check_temperature(5) and check_temperature(float("nan"))


def test_piped_chat_of_twelve_turns_never_fails_on_context(toy_model_dir):
    """`crawl2chat chat` with its input piped: 12 turns through a 128-token context. Every turn is
    answered, the oldest turns leave with a note, no markup or ANSI (no tty), /temp 5 refused as by the API."""
    turns = [f"What is {i}+{2 * i + 1}?" for i in range(12)]
    script = "\n".join([turns[0], "/tokens", *turns[1:], "/tokens", "/temp 5", "/temp 0.5", "/quit"]) + "\n"
    proc = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(toy_model_dir),
                           "--temperature", "0", "--max-tokens", "40"],
                          input=script, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    replies = [line for line in out.splitlines() if "bot> " in line]
    assert len(replies) == 12 and all(r.split("bot> ", 1)[1].strip() for r in replies), out
    assert "<|" not in out and "|>" not in out and "\x1b[" not in out
    assert "fills the model's context" not in out and "shorten" not in out
    assert "(the model no longer sees the oldest" in out and "turns dropped:" in out
    # the toy's calculator call is shown as [call → result]
    assert " → " in out and "tools: calculator;" in out.splitlines()[0]
    assert "(temperature must be 0 (greedy) or between 0.01 and 2)" in out and "(temperature = 0.5)" in out


def test_reply_display_dims_calls_on_a_terminal():
    from crawl2chat.commands.chat import ReplyDisplay
    from lm.engine import ToolRun

    run = ToolRun("python: print(1)")
    events = [("text", "Let me run it. "), ("tool_call", run), ("tool_result", ToolRun(run.call, "1")),
              ("text", "It is 1.")]
    plain = ReplyDisplay(dim=False)
    assert "".join(plain.show(*e) for e in events) + plain.end() == "Let me run it. [python: print(1) → 1] It is 1."
    tty = ReplyDisplay(dim=True)
    assert "".join(tty.show(*e) for e in events) == \
        "Let me run it. \x1b[2m[python: print(1) → \x1b[0m\x1b[2m1]\x1b[0m It is 1."
    # a call no result followed (tools off) is closed, never left open
    cut = ReplyDisplay(dim=False)
    assert "".join(cut.show(*e) for e in events[:2]) + cut.end() == "Let me run it. [python: print(1) → …]"


def test_chat_command_bad_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(tmp_path / "nope")],
                          input="", capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "not found" in proc.stderr


def test_reply_cut_by_the_context_says_so_and_offers_a_larger_one(toy_model_dir):
    from lm.engine import MIN_REPLY_TOKENS, render_prompt

    probe, _ = load_engine(str(toy_model_dir))
    n_prompt = len(render_prompt(probe.tokenizer, [{"role": "user", "content": "What is 12+7?"}]))
    limit = n_prompt + MIN_REPLY_TOKENS  # the least room a newest message may leave
    engine, _ = load_engine(str(toy_model_dir), max_context=limit)
    s = ChatSession(engine, temperature=0.0, top_k=None, max_tokens=40)
    list(s.reply("What is 12+7?"))
    assert s.last_reply_tokens == MIN_REPLY_TOKENS and s.last_finish == "context"
    note = s.context_note()
    assert f"end of the {limit}-token context" in note and "--context" in note
    assert str(engine.model.rotary_len) in note
    # a reply that ends on its own (or at --max-tokens) gets no note
    roomy = ChatSession(probe, temperature=0.0, top_k=None, max_tokens=3)
    list(roomy.reply("What is 12+7?"))
    assert roomy.last_finish in ("stop", "length") and roomy.context_note() is None


def test_chat_tools_follow_the_checkpoint_subprocess(persona_model_dir):
    """`chat --persona` on a checkpoint whose SFT taught calculator, python and search: those tools are on by
    default (search off, with a note: no index beside the checkpoint), and the persona's system message names
    exactly the enabled ones. `--tools ''` turns them all off; the conversation then starts without a system
    message (fewer tokens)."""
    cmd = [sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(persona_model_dir), "--temperature", "0",
           "--max-tokens", "8"]
    script = "/system\n/tools\n/tokens\n/quit\n"
    plain = subprocess.run([*cmd, "--tools", ""], input=script, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([*cmd, "--persona"], input=script, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and plain.returncode == 0, proc.stderr + plain.stderr
    assert "(system: You are Toy, an assistant made by the tests. Tools: calculator, python.)" in proc.stdout
    assert "(tools: calculator, python)" in proc.stdout and "tools: calculator, python;" in proc.stdout
    assert "search is off: the model was trained to call it" in proc.stdout and "--search-index" in proc.stdout
    assert "(no system message" in plain.stdout and "(no tools)" in plain.stdout

    def tokens(out):
        return int(out.split("(conversation: ")[1].split()[0])
    assert tokens(proc.stdout) > tokens(plain.stdout)
