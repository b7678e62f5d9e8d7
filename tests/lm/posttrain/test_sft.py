"""SFT data (real + GENERATED, skips counted with reasons, packing) and the SFT loop (learning, exact resume)."""
from __future__ import annotations

import json

import pytest
import torch

from conf.posttrain import SFTConfig, data_dir
from lm.checkpoint import load_weights
from lm.datasets import arithmetic
from lm.posttrain.sft import train_sft
from lm.datasets.identity import generate_identity
from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources, pack, read_records
from tests.support.posttrain_base import SEQ_LEN, load_base


def test_real_sources_load_and_map_roles():
    stats = SkipStats()
    d = data_dir() / "sft"
    convs = load_sources({"alpaca": str(d / "llamafactory_alpaca_en_demo.json"),
                          "glaive": str(d / "llamafactory_glaive_toolcall_en_demo.json")}, stats)
    by = {}
    for src, c in convs:
        by.setdefault(src, []).append(c)
    assert len(by["alpaca"]) == 999 and len(by["glaive"]) == 300
    tool_convs = [c for c in by["glaive"] if any(isinstance(m["content"], list) for m in c)]
    assert len(tool_convs) > 100  # function calls became assistant tool calls
    c = tool_convs[0]
    i = next(i for i, m in enumerate(c) if isinstance(m["content"], list))
    assert c[i]["content"][0]["type"] == "tool_call" and c[i + 1]["role"] == "tool"
    assert c[0]["role"] == "system" and "search_recipes" in c[0]["content"]


def test_bad_records_are_skipped_and_counted(tmp_path):
    """A GENERATED JSONL with one good record and one of each kind of bad record."""
    tok = load_base()[1]
    path = tmp_path / "generated_bad_sft.jsonl"
    good = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    lines = [json.dumps(good), "{not json", json.dumps({"conversations": [{"from": "alien", "value": "x"}]}),
             json.dumps({"conversations": [{"from": "human", "value": " "}, {"from": "gpt", "value": "a"}]}),
             json.dumps({"conversations": [{"from": "human", "value": "long " * 300}, {"from": "gpt", "value": "a"}]}),
             json.dumps([1, 2])]
    path.write_text("\n".join(lines) + "\n")
    stats = SkipStats()
    convs = load_sources({"glaive_bad": str(path)}, stats)
    data = build_sft_data(convs, tok, SEQ_LEN, 0.0, stats)
    s = data.stats
    assert s["skipped"] == {"glaive_bad/malformed_json": 1, "glaive_bad/unknown_role": 1,
                            "glaive_bad/empty_turn": 1, "glaive_bad/too_long": 1, "glaive_bad/not_an_object": 1}
    assert s["kept"] == {"glaive_bad": 1} and s["n_skipped"] == 5


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_records(tmp_path / "nope.json", "x", SkipStats())


def test_generated_data_is_deterministic_and_correct():
    a = arithmetic.conversations(50, seed=3, difficulty=2)
    assert a == arithmetic.conversations(50, seed=3, difficulty=2)
    for conv in a:
        parts = conv[1]["content"]
        expr, out = parts[0]["text"].replace(" ", ""), parts[1]["text"]
        x, op, y = next((expr.partition(o) for o in "+-" if o in expr[1:]), None)
        assert int(out) == (int(x) + int(y) if op == "+" else int(x) - int(y))
        assert parts[2]["text"] == f"The answer is {out}."
    ids = generate_identity(20, seed=1)
    assert all("crawl2chat" in c[1]["content"] for c in ids)


def test_pack_keeps_conversations_whole_and_masks_targets():
    tok = load_base()[1]
    stats = SkipStats()
    convs = [("generated_arithmetic", c) for c in arithmetic.conversations(40, seed=0)]
    data = build_sft_data(convs, tok, SEQ_LEN, 0.1, stats)
    X, Y = data.train
    assert X.shape[1] == Y.shape[1] == SEQ_LEN
    bos, end = tok.bos_id, tok.encode_special("<|assistant_end|>")
    # Every row starts a conversation; every target is a masked (assistant) token or -1.
    assert bool((X[:, 0] == bos).all())
    n_conv = int((X == bos).sum())
    assert n_conv == stats.as_dict()["n_kept"] - data.stats["n_val_conversations"]
    assert int((Y == end).sum()) == n_conv  # each conversation's <|assistant_end|> is a target exactly once
    user_tokens = {tok.encode_special("<|user_start|>"), tok.encode_special("<|user_end|>"),
                   tok.encode_special("<|output_start|>"), tok.encode_special("<|assistant_start|>")}
    assert not set(Y[Y >= 0].tolist()) & user_tokens
    with pytest.raises(ValueError, match="exceeds row width"):
        from lm.chat import Rendered
        pack([Rendered([1] * 10, [1] * 10)], 5, 0)


def _cfg(**kw):
    base = dict(steps=30, batch_size=8, lr=3e-3, eval_every=30, checkpoint_every=1000, log_every=10,
                alpaca_path=None, glaive_path=None)
    return SFTConfig(**{**base, **kw})


def _data(tok):
    stats = SkipStats()
    convs = load_sources({}, stats, n_identity=20, n_arithmetic=200, arithmetic_difficulty=1)
    return build_sft_data(convs, tok, SEQ_LEN, 0.1, stats)


def test_sft_lowers_validation_loss(tmp_path):
    model, tok, _ = load_base()
    logged = []
    res = train_sft(model, tok, _data(tok), _cfg(), tmp_path / "sft", log_fn=lambda m, s: logged.append((s, m)))
    assert res["val_loss"] < 0.7 * res["val_loss_start"]
    assert (tmp_path / "sft" / "final" / "model.safetensors").exists()
    assert any("train_loss" in m for _, m in logged)


def test_sft_resume_is_exact(tmp_path):
    model, tok, _ = load_base()
    data = _data(tok)
    train_sft(model, tok, data, _cfg(steps=6, checkpoint_every=3), tmp_path / "straight")
    # Interrupted run: stop after 3 steps (checkpoint at 3), then resume to 6 from a fresh model.
    m2, _, _ = load_base()
    train_sft(m2, tok, data, _cfg(steps=3, checkpoint_every=3), tmp_path / "resumed")
    m3, _, _ = load_base()
    train_sft(m3, tok, data, _cfg(steps=6, checkpoint_every=3), tmp_path / "resumed")
    a = load_weights(tmp_path / "straight" / "final")
    b = load_weights(tmp_path / "resumed" / "final")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_gsm8k_solutions_become_calculator_calls_from_the_train_part_only():
    from lm.chat import ChatRenderer
    from lm.datasets import gsm8k

    path = data_dir() / "gsm8k" / "train.jsonl"
    train, held = gsm8k.split(path)
    conv = gsm8k.conversation(train[0])  # "48/2 = <<48/2=24>>24 clips ... #### 72"
    parts = conv[1]["content"]
    assert [p["type"] for p in parts] == ["text", "tool_call", "tool_output", "text", "tool_call", "tool_output",
                                          "text"]
    assert parts[1] == {"type": "tool_call", "text": "48/2"} and parts[2]["text"] == "24"
    assert parts[-1]["text"].endswith("#### 72") and "<<" not in json.dumps(conv)
    # A mark our calculator refuses stays plain text; without the tool every mark is dropped.
    odd = {"question": "q", "answer": "It is 2x3 = <<2x3=6>>6.\n#### 6"}
    assert gsm8k.conversation(odd)[1]["content"] == [{"type": "text", "text": "It is 2x3 = 6.\n#### 6"}]
    assert all(p["type"] == "text" for p in gsm8k.conversation(train[0], use_tool=False)[1]["content"])

    stats = SkipStats()
    convs = load_sources({}, stats, gsm8k_path=str(path))
    questions = {c[0]["content"] for src, c in convs if src == "gsm8k"}
    assert len(questions) == len(train) and not questions & {p["question"] for p in held}
    # The forced tool output is context, not a target: its tokens are outside the loss mask.
    tok = load_base()[1]
    r = ChatRenderer(tok).render(conv)
    out_start = tok.encode_special("<|output_start|>")
    i = r.ids.index(out_start)
    assert r.mask[i] == 0 and r.mask[i + 1] == 0 and r.mask[r.ids.index(tok.encode_special("<|tool_start|>"))] == 1
