"""Chat suite: grading rules, the one GSM8K grader shared by RL and eval, and a
run on the toy model (tests/support/toy.py: real text + GENERATED conversations)."""
import pytest
import torch

from lm.evals import chat as chat_eval

from lm.datasets import arithmetic, benchmarks, gsm8k, triviaqa
from lm.datasets.answers import reply_answer
from lm.checkpoint import load_model
from lm.engine import Completion, Engine
from lm.posttrain.rl import Problem, exact_reward
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tok, _ = load_model(make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150))
    yield model, tok
    torch.set_num_threads(threads)


def _completion(tok, parts):
    """A Completion from (text, kind) parts; kind: text | call | output (forced by the engine)."""
    sp = tok.encode_special
    tokens, forced = [], []
    for text, kind in parts:
        if kind == "call":
            ids, f = [sp("<|tool_start|>"), *tok.encode(text), sp("<|tool_end|>")], 0
        elif kind == "output":
            ids, f = [sp("<|output_start|>"), *tok.encode(text), sp("<|output_end|>")], 1
        else:
            ids, f = tok.encode(text), 0
        tokens += ids
        forced += [f] * len(ids)
    return Completion(tokens=tokens, forced_mask=forced, text=tok.decode(tokens))


@pytest.mark.parametrize("parts,gold,want", [
    ([("12+7", "call"), ("19", "output"), ("The answer is 19.", "text")], "19", True),
    ([("12+7", "call"), ("19", "output")], "19", False),  # only the calculator said it
    ([("12+7", "call"), ("19", "output"), ("So 20.", "text")], "19", False),
    ([("48/2 = 24, so 72 clips\n#### 72", "text")], "72", True),
    ([("#### 1,250", "text")], "1250", True),
    ([("no idea", "text")], "3", False),
])
def test_rl_reward_and_eval_grade_agree_with_and_without_tool_output(toy, parts, gold, want):
    _, tok = toy
    c = _completion(tok, parts)
    assert gsm8k.grade(c, gold, tok) is want and arithmetic.grade(c, gold, tok) is want
    assert exact_reward(Problem([{"role": "user", "content": "q"}], gold), c, tok) == float(want)


def test_chat_gsm8k_eval_counts_exactly_what_rl_rewards(toy):
    model, tok = toy
    eng = Engine(model, tok)
    probs = [{"question": f"What is {a}+{b}?", "final": str(a + b)} for a, b in [(12, 7), (30, 41), (5, 9), (66, 3)]]
    r = chat_eval.gsm8k_chat_eval(eng, probs, max_new_tokens=40)
    ids = [chat_eval.render_for_completion([{"role": "user", "content": p["question"]}], tok) for p in probs]
    comps = eng.generate(ids, 40, temperature=0.0, truncate="left")
    rewards = [exact_reward(Problem([], p["final"]), c, tok) for p, c in zip(probs, comps)]
    assert r["score"] == pytest.approx(sum(rewards) / len(rewards)) and r["n"] == 4
    assert [row["answers"][0] for row in r["rows"]] == [reply_answer(c, tok) for c in comps]


def test_answer_normalisation_and_verdicts():
    assert triviaqa.normalize_answer("The  Sunset Blvd.!") == "sunset blvd"
    aliases = ["Sunset Boulevard", "Sunset Blvd."]
    assert triviaqa.grade("sunset boulevard", aliases) == "right"
    assert triviaqa.grade("Sunset Blvd. It premiered in 1993.", aliases) == "right"
    assert triviaqa.grade("Cats", aliases) == "wrong"
    assert triviaqa.grade("I don't know.", aliases) == "abstain"
    assert triviaqa.grade("", aliases) == "abstain"
    assert benchmarks.parse_letter("The answer is (C).", ["A", "B", "C", "D"]) == "C"
    assert benchmarks.parse_letter("I think so", ["A", "B", "C", "D"]) is None  # 'I' is no choice here


def test_chat_suite_runs_on_real_data(toy):
    model, tok = toy
    r = chat_eval.run_chat(Engine(model, tok), limit=4, max_new_tokens=24, batch_size=4)
    assert set(r["tasks"]) == {"arc_easy", "arc_challenge", "gsm8k", "triviaqa"}
    for name, m in r["tasks"].items():
        assert m["n"] == 4 and 0 <= m["score"] <= 1, name
    assert r["tasks"]["arc_easy"]["chance"] == pytest.approx(0.25, abs=0.05)
    t = r["tasks"]["triviaqa"]
    assert t["score"] + t["wrong_rate"] + t["abstain_rate"] == pytest.approx(1.0)
