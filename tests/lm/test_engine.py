"""Engine: KV-cached greedy == full recomputation, batching, sampling controls, tools, context limits.

Uses a toy model trained for a few seconds on real text + GENERATED tool-use
conversations (tests/support/toy.py), so it emits real chat and tool markup.
"""
import pytest
import torch

from lm.checkpoint import load_model
from lm.engine import Engine, render_prompt, sample_next
from lm.tools import ToolRegistry, calculator
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)
    model, tok, _ = load_model(path)
    return model, tok


@pytest.fixture
def engine(toy):
    return Engine(*toy)


def _ask(tok, q):
    return render_prompt(tok, [{"role": "user", "content": q}])


def _greedy_recompute(model, prompt, n):
    ctx, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ctx]))[0, -1].argmax())
            out.append(nxt)
            ctx.append(nxt)
    return out


def test_greedy_cache_equals_full_recomputation(toy):
    model, tok = toy
    eng = Engine(model, tok, tools=None)
    prompt = tok.encode("ROMEO: What light", prepend_bos=True)
    c = eng.generate([prompt], 40, temperature=0, stop_ids=set())[0]
    assert c.tokens == _greedy_recompute(model, prompt, 40)
    assert c.finish_reason == "length" and len(c.tokens) == 40


def test_batch_of_different_lengths_matches_single_runs(toy):
    model, tok = toy
    eng = Engine(model, tok, tools=None)
    prompts = [tok.encode(t, prepend_bos=True) for t in
               ["First Citizen:", "ROMEO: But soft, what light through yonder window breaks", "A"]]
    assert len({len(p) for p in prompts}) == 3
    batched = eng.generate(prompts, 25, temperature=0, stop_ids=set())
    for p, c in zip(prompts, batched):
        assert c.tokens == _greedy_recompute(model, p, 25)


def test_num_samples_prefill_once_seeded(engine, toy):
    _, tok = toy
    prompts = [_ask(tok, "What is 3+4?"), _ask(tok, "Who are you, sir?")]
    a = engine.generate(prompts, 30, temperature=1.0, seed=7, num_samples=3)
    b = engine.generate(prompts, 30, temperature=1.0, seed=7, num_samples=3)
    assert [c.tokens for c in a] == [c.tokens for c in b]
    assert [(c.prompt_index, c.sample_index) for c in a] == [(i, j) for i in range(2) for j in range(3)]
    assert len({tuple(c.tokens) for c in a}) > 1  # samples differ
    c = engine.generate(prompts, 30, temperature=1.0, seed=8, num_samples=3)
    assert [x.tokens for x in a] != [x.tokens for x in c]


def test_top_k_1_and_tiny_top_p_are_greedy(engine, toy):
    _, tok = toy
    p = [_ask(tok, "What is 5*6?")]
    greedy = engine.generate(p, 30, temperature=0)[0].tokens
    assert engine.generate(p, 30, temperature=1.3, top_k=1, seed=3)[0].tokens == greedy
    assert engine.generate(p, 30, temperature=1.3, top_p=1e-6, seed=3)[0].tokens == greedy


def test_sample_next_top_p_keeps_only_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen = {int(sample_next(logits, 1.0, top_p=0.7, generator=g)) for _ in range(300)}
    assert seen == {0, 1}
    seen = {int(sample_next(logits, 1.0, top_k=3, generator=g)) for _ in range(300)}
    assert seen == {0, 1, 2}


def test_stop_token_ends_and_is_left_out_of_text(engine, toy):
    _, tok = toy
    cs = engine.generate([_ask(tok, "What is 12+7?")], 60, temperature=0)
    c = cs[0]
    assert c.finish_reason == "stop"
    assert c.tokens[-1] == tok.encode_special("<|assistant_end|>")
    assert "<|assistant_end|>" not in c.text


def test_tool_output_is_forced_and_masked(toy):
    model, tok = toy
    calls = []

    def calc(arg):
        calls.append(arg)
        return calculator(arg)

    eng = Engine(model, tok, tools=ToolRegistry(tools={"calculator": calc}))
    cs = eng.generate([_ask(tok, f"What is {a}+{b}?") for a, b in [(12, 7), (40, 2), (3, 9)]],
                      60, temperature=0)
    ts, te = tok.encode_special("<|tool_start|>"), tok.encode_special("<|tool_end|>")
    os_, oe = tok.encode_special("<|output_start|>"), tok.encode_special("<|output_end|>")
    n_checked = 0
    for c in cs:
        assert len(c.forced_mask) == len(c.tokens)
        if te not in c.tokens:
            continue
        i, j = c.tokens.index(ts), c.tokens.index(te)
        call = tok.decode(c.tokens[i + 1:j])
        forced = [os_, *tok.encode(calculator(call)), oe]
        assert c.tokens[j + 1:j + 1 + len(forced)] == forced
        assert c.forced_mask[j + 1:j + 1 + len(forced)] == [1] * len(forced)
        assert sum(c.forced_mask) == len(forced) * c.tool_calls
        assert c.forced_mask[:j + 1] == [0] * (j + 1)
        n_checked += 1
    assert n_checked >= 2  # the toy model learned to call the tool
    assert len(calls) >= 2


def test_tool_budget_exhausted(toy):
    model, tok = toy
    eng = Engine(model, tok)
    c = eng.generate([_ask(tok, "What is 12+7?")], 60, temperature=0, tool_budget=0)[0]
    assert c.tool_calls >= 1
    assert "error: tool budget exhausted" in c.text


def test_no_tools_means_nothing_forced(toy):
    model, tok = toy
    c = Engine(model, tok, tools=None).generate([_ask(tok, "What is 12+7?")], 40, temperature=0)[0]
    assert sum(c.forced_mask) == 0


def test_stream_matches_generate(engine, toy):
    _, tok = toy
    p = _ask(tok, "What is 8*8?")
    events = list(engine.stream(p, 50, temperature=0))
    c = engine.generate([p], 50, temperature=0)[0]
    assert [e.token for e in events] == c.tokens
    assert [int(e.forced) for e in events] == c.forced_mask
    assert "".join(e.text for e in events) == c.text
    assert events[-1].finish_reason == c.finish_reason and all(e.finish_reason is None for e in events[:-1])


def test_context_overflow(toy):
    model, tok = toy
    eng = Engine(model, tok, max_context=64)
    long = tok.encode("To be, or not to be, that is the question. " * 20, prepend_bos=True)
    assert len(long) > 64
    with pytest.raises(ValueError, match="context holds 64"):
        eng.generate([long], 10)
    c = eng.generate([long], 10, truncate="left", temperature=0, stop_ids=set())[0]
    assert c.prompt_len == 63 and len(c.tokens) == 1 and c.finish_reason == "context"
    short = tok.encode("To be", prepend_bos=True)
    c = eng.generate([short], 1000, temperature=0, stop_ids=set())[0]
    assert len(short) + len(c.tokens) == 64 and c.finish_reason == "context"


def test_bad_prompts_are_clear_errors(engine, toy):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        engine.generate([[1, 2], []], 5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.generate([[10 ** 6]], 5)


def test_render_prompt(toy):
    _, tok = toy
    ids = render_prompt(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert ids[0] == tok.bos_id and ids[-1] == tok.encode_special("<|assistant_start|>")
    assert tok.encode_special("<|system_start|>") in ids
    with pytest.raises(ValueError, match="role 'tool'"):
        render_prompt(tok, [{"role": "tool", "content": "x"}])
