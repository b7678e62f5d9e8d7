"""Eval metrics on a toy model (tests/support/toy.py: real text + GENERATED conversations)."""
import math

import pytest
import torch
import torch.nn.functional as F

from lm.checkpoint import load_model
from lm.engine import Engine
from lm.datasets import arithmetic, gsm8k
from lm.evals.basic import (arithmetic_eval, bits_per_byte, chat_compliance, gsm8k_eval, pass_at_k,
                            sample_generations)
from lm.model import GPT
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model, tok, _ = load_model(make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150))
    return model, tok


def test_pass_at_k():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 4, 2) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - (3 / 5) * (2 / 4))


def test_gsm8k_split_holds_out_last_500():
    train, held = gsm8k.split()
    assert len(held) == gsm8k.HELDOUT == 500 and len(train) + 500 == 7473
    assert held[-1]["question"] != train[-1]["question"]
    assert not {r["question"] for r in held} & {r["question"] for r in train}
    assert train[0]["final"] == "72"


def test_bits_per_byte_matches_direct_computation(toy):
    model, tok = toy
    text = "Now is the winter of our discontent made glorious summer by this sun of York."
    ids = tok.encode(text, prepend_bos=True)
    r = bits_per_byte(model, tok, ids, seq_len=16, batch_size=2)
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))[0]
    nats = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
    assert r["bytes"] == len(text.encode())
    # windows of 16 see less context than one pass, so they may only be worse, and close
    full = nats / math.log(2) / len(text.encode())
    assert full <= r["bpb"] * 1.02 and r["bpb"] < full * 1.5
    assert bits_per_byte(model, tok, ids, seq_len=128)["bpb"] == pytest.approx(full, rel=1e-4)
    untrained = GPT(model.config)
    assert bits_per_byte(untrained, tok, ids, seq_len=128)["bpb"] > r["bpb"]


def test_engine_evals_run_on_toy(toy):
    model, tok = toy
    eng = Engine(model, tok)
    probs = [{"question": "What is 12+7?", "final": "19"}, {"question": "What is 40+2?", "final": "42"}]
    g = gsm8k_eval(eng, probs, k=3, max_new_tokens=40, seed=1)
    assert g["n"] == 2 and 0 <= g["pass@1"] <= g["pass@3"] <= 1 and len(g["rows"][0]["answers"]) == 3
    # the one generator's items, asked the way the toy was trained ("What is 12+7?")
    items = [{**p, "question": f"What is {p['expr']}?"} for p in arithmetic.problems(8, seed=3, difficulty=3)]
    a = arithmetic_eval(model, tok, items, max_new_tokens=40)
    assert a["with_tool"]["tool_calls"] > 0 and a["no_tool"]["tool_calls"] == 0
    assert 0 <= a["no_tool"]["accuracy"] <= 1
    c = chat_compliance(eng, ["What is 3+3?", "What is 9*2?"], max_new_tokens=60)
    assert c["compliance"] == c["finish_reasons"]["stop"] / 2 == sum(r["ok"] for r in c["rows"]) / 2
    assert [r["prompt"] for r in c["rows"]] == ["What is 3+3?", "What is 9*2?"]
    assert all(r["tokens"] <= 60 and 0 <= r["forced_tokens"] <= r["tokens"] for r in c["rows"])
    s = sample_generations(eng, ["What is 5+5?"], max_new_tokens=30)
    assert s[0]["prompt"] == "What is 5+5?" and isinstance(s[0]["reply"], str)
