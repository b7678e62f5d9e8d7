"""Chat rendering: the loss mask covers exactly the assistant's own tokens."""
from __future__ import annotations

import pytest

from lm.chat import ChatError, ChatRenderer, normalize
from tests.support.posttrain_base import load_base


@pytest.fixture(scope="module")
def tok():
    return load_base()[1]


def _spans(tok, r):
    """(masked text, unmasked text) of a rendering."""
    on = tok.decode([i for i, m in zip(r.ids, r.mask) if m])
    off = tok.decode([i for i, m in zip(r.ids, r.mask) if not m])
    return on, off


def test_mask_covers_exactly_assistant_tokens_and_tool_calls(tok):
    conv = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me check. "},
                                              {"type": "tool_call", "text": "2+3"}]},
            {"role": "tool", "content": "5"},
            {"role": "assistant", "content": "It is 5."},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "You're welcome."}]
    r = ChatRenderer(tok)
    out = r.render(conv)
    assert len(out.ids) == len(out.mask)
    on, off = _spans(tok, out)
    assert on == ("Let me check. <|tool_start|>2+3<|tool_end|>It is 5.<|assistant_end|>"
                  "You're welcome.<|assistant_end|>")
    assert off == ("<|bos|><|system_start|>Be brief.<|system_end|><|user_start|>What is 2+3?<|user_end|>"
                   "<|assistant_start|><|output_start|>5<|output_end|><|user_start|>Thanks<|user_end|>"
                   "<|assistant_start|>")
    # Exact token-level check: every masked position is an assistant-produced id.
    sp = tok.encode_special
    expected = ([1] * len(tok.encode("Let me check. ")) + [1] + [1] * len(tok.encode("2+3")) + [1]
                + [0] + [0] * len(tok.encode("5")) + [0] + [1] * len(tok.encode("It is 5.")) + [1])
    start = out.ids.index(sp("<|assistant_start|>")) + 1
    assert out.mask[start:start + len(expected)] == expected
    # The tool output is one assistant turn: one <|assistant_start|> before "Thanks".
    assert out.ids.count(sp("<|assistant_start|>")) == 2


def test_render_for_completion_ends_with_assistant_start(tok):
    r = ChatRenderer(tok)
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ids = r.render_for_completion(conv)
    assert ids[-1] == tok.encode_special("<|assistant_start|>")
    assert tok.decode(ids) == "<|bos|><|user_start|>hi<|user_end|><|assistant_start|>"
    # Prompt + rendered reply is a prefix-consistent rendering of the whole conversation.
    full = r.render(conv).ids
    assert full[:len(ids)] == ids


@pytest.mark.parametrize("conv,reason", [
    ([{"role": "wizard", "content": "x"}], "unknown_role"),
    ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}], "empty_turn"),
    ([{"role": "user", "content": "q"}], "no_assistant"),
    ([{"role": "user", "content": "q"}, {"role": "tool", "content": "1"}], "bad_order"),
    ([], "not_a_list"),
])
def test_bad_conversations_raise_with_reason(tok, conv, reason):
    with pytest.raises(ChatError) as e:
        ChatRenderer(tok).render(conv)
    assert e.value.reason == reason


def test_too_long_is_an_error_with_reason(tok):
    conv = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(ChatError) as e:
        ChatRenderer(tok).render(conv, max_len=50)
    assert e.value.reason == "too_long"


def test_normalize_merges_tool_runs_into_one_assistant_turn():
    turns = normalize([{"role": "user", "content": "q"},
                       {"role": "assistant", "content": [{"type": "tool_call", "text": "1+1"}]},
                       {"role": "tool", "content": "2"}, {"role": "assistant", "content": "2"}])
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert [p["type"] for p in turns[1]["content"]] == ["tool_call", "tool_output", "text"]
