"""The one conversation-memory policy (lm.engine.fit_conversation) and the one reply reader (ReplyReader)
that chat, serve, the web page and the API share — pure, on the toy tokenizer (no generation)."""
import pytest

from lm.chat import render_prompt
from lm.engine import (CUT_NOTES, EMPTY_NOTE, MIN_REPLY_TOKENS, ContextError, ReplyReader, fit_conversation,
                       read_reply, visible_reply)
from lm.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok(toy_model_dir):
    return Tokenizer.load(toy_model_dir / "tokenizer.json")


def _talk(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"What is {i}+{i}?"}, {"role": "assistant", "content": f"It is {2 * i}."}]
    return out


def test_keeps_the_system_message_and_the_newest_whole_turns(tok):
    msgs = [*_talk(12), {"role": "user", "content": "And 5+5?"}]
    f = fit_conversation(tok, msgs, context=128, max_new_tokens=40, system="Be brief.")
    kept = msgs[f.dropped_messages:]
    assert f.dropped_messages > 0 and f.dropped_messages % 2 == 0 and f.dropped_turns == f.dropped_messages // 2
    assert f.ids == render_prompt([{"role": "system", "content": "Be brief."}, *kept], tok)
    assert len(f.ids) <= 128 - 40 < len(render_prompt(msgs[f.dropped_messages - 2:], tok, system="Be brief."))
    assert "oldest" in f.note() and "128 tokens" in f.note()
    # everything fits: nothing dropped, no note, the reply gets what it asked for
    short = fit_conversation(tok, msgs[-3:], context=128, max_new_tokens=40)
    assert short.dropped_messages == 0 and short.note() is None and short.max_new_tokens == 40


def test_a_reply_budget_past_the_context_leaves_half_for_history(tok):
    msgs = [*_talk(12), {"role": "user", "content": "And 5+5?"}]
    f = fit_conversation(tok, msgs, context=128, max_new_tokens=1000)
    assert len(f.ids) <= 64 < len(render_prompt(msgs[f.dropped_messages - 2:], tok))
    assert f.max_new_tokens == 128 - len(f.ids)


def test_only_a_newest_message_that_cannot_fit_is_refused(tok):
    huge_old = [{"role": "user", "content": "word " * 5000}, {"role": "assistant", "content": "ok"}]
    f = fit_conversation(tok, [*huge_old, {"role": "user", "content": "hi"}], context=128, max_new_tokens=40)
    assert f.dropped_messages == 2  # an old message too long is dropped, never refused
    n = len(render_prompt([{"role": "user", "content": "word " * 20}], tok))
    fit_conversation(tok, [{"role": "user", "content": "word " * 20}], context=n + MIN_REPLY_TOKENS, max_new_tokens=40)
    with pytest.raises(ContextError, match="shorten the message"):
        fit_conversation(tok, [{"role": "user", "content": "word " * 20}], context=n + MIN_REPLY_TOKENS - 1,
                         max_new_tokens=40)
    with pytest.raises(ContextError, match="the prompt limit is 10 tokens"):
        fit_conversation(tok, [{"role": "user", "content": "word " * 20}], 128, 40, max_prompt_tokens=10)


def _ids(tok, *parts) -> list[int]:
    out = []
    for p in parts:
        out += [tok.encode_special(p)] if p.startswith("<|") else tok.encode(p)
    return out


def test_reader_shows_text_and_tool_runs_never_markup(tok):
    r = read_reply(tok, _ids(tok, "Let me see. ", "<|tool_start|>", "12+7", "<|tool_end|>", "<|output_start|>",
                             "19", "<|output_end|>", "It is 19.", "<|user_start|>", "<|assistant_end|>"), "stop")
    assert r.text == "Let me see. It is 19." and [(x.call, x.result) for x in r.runs] == [("12+7", "19")]
    assert r.cut is None and visible_reply(r) == r.text


def test_reader_drops_a_cut_call_and_says_why(tok):
    cut = read_reply(tok, _ids(tok, "Sure. ", "<|tool_start|>", "search: tides"), "length")
    assert cut.runs == [] and visible_reply(cut) == "Sure. " + CUT_NOTES["limit"]
    ended = read_reply(tok, _ids(tok, "<|tool_start|>", "1111", "<|assistant_end|>"), "stop")
    assert ended.runs == [] and visible_reply(ended) == CUT_NOTES["ended"]
    # a malformed call (no <|tool_end|>) is dropped and the text after it kept
    bad = read_reply(tok, _ids(tok, "<|tool_start|>", "11", "<|output_end|>", "The answer is 11."), "stop")
    assert bad.text == "The answer is 11." and bad.runs == [] and bad.cut is None
    assert visible_reply(read_reply(tok, _ids(tok, "<|assistant_end|>"), "stop")) == EMPTY_NOTE


def test_reader_streams_whole_characters(tok):
    ids = tok.encode("café ☕ ok")
    reader, pieces = ReplyReader(tok), []
    for t in ids:
        pieces += [v for k, v in reader.feed(t) if k == "text"]
    pieces += [v for k, v in reader.close("stop") if k == "text"]
    assert "".join(pieces) == "café ☕ ok" and all("\ufffd" not in p for p in pieces)
