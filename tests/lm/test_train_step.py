"""lm.optim.train_step: k micro-batches update the weights exactly as one big batch (the loss scaling)."""
import copy

import torch

from lm.checkpoint import load_weights
from lm.model import GPT, GPTConfig
from lm.optim import build_optimizer, train_step
from tests.support.posttrain_base import SEQ_LEN, load_base


def _batch():
    """GENERATED token rows whose targets are masked unevenly (as SFT's assistant-only loss)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 64, (8, 16), generator=g)
    y = torch.randint(0, 64, (8, 16), generator=g)
    keep = torch.arange(16)[None] < torch.tensor([16, 2, 9, 1, 16, 5, 12, 3])[:, None]
    return x, y.masked_fill(~keep, -1)


def _step(model, rows: list[slice], x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # linear in the gradient (Adam's first step is ~sign(g))
    n_tok = int((y >= 0).sum())
    st = train_step(opt, model, rows, lambda r: model(x[r], targets=y[r], loss_reduction="sum"), grad_clip=1.0,
                    normalizer=n_tok)
    return st


def test_micro_batches_give_the_one_big_batch_update():
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=64, sequence_len=16, n_layer=2, n_head=2, n_kv_head=2, n_embd=32))
    with torch.no_grad():  # non-zero residual projections, so every weight gets a gradient
        for p in base.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x, y = _batch()
    one, split = copy.deepcopy(base), copy.deepcopy(base)
    a = _step(one, [slice(0, 8)], x, y)
    b = _step(split, [slice(0, 2), slice(2, 3), slice(3, 8)], x, y)
    assert abs(a["loss"] - b["loss"]) < 1e-5
    torch.testing.assert_close(a["grad_norm"], b["grad_norm"], rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(one.named_parameters(), split.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # The update is real, and a mean-of-micro-batch-means (the usual mistake) would differ.
    assert any(not torch.equal(p, q) for p, q in zip(base.parameters(), one.parameters()))
    naive = copy.deepcopy(base)
    opt = torch.optim.SGD(naive.parameters(), lr=0.5)
    parts = [slice(0, 2), slice(2, 3), slice(3, 8)]
    train_step(opt, naive, parts, lambda r: naive(x[r], targets=y[r]) * 8 / 3, grad_clip=1.0, normalizer=8)
    assert any(not torch.allclose(p, q, rtol=1e-3, atol=1e-5) for p, q in zip(one.parameters(), naive.parameters()))


def test_a_step_with_nothing_to_learn_from_is_skipped_not_applied():
    model = GPT(GPTConfig(vocab_size=16, sequence_len=8, n_layer=1, n_head=1, n_kv_head=1, n_embd=16))
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(model, lr=0.1, weight_decay=0.1)
    st = train_step(opt, model, [slice(0, 1)], lambda r: model(torch.zeros(1, 4, dtype=torch.long),
                                                                targets=torch.full((1, 4), -1), loss_reduction="sum"),
                    grad_clip=1.0, normalizer=0)
    assert st["skipped"] == 1.0 and st["loss"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_sft_with_gradient_accumulation_matches_the_full_batch(tmp_path):
    """SFT rows carry different numbers of assistant tokens: only token-weighted scaling matches."""
    from conf.posttrain import SFTConfig
    from lm.posttrain.sft import train_sft
    from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources

    model, tok, _ = load_base()
    stats = SkipStats()
    data = build_sft_data(load_sources({}, stats, n_identity=20, n_arithmetic=80, arithmetic_difficulty=1), tok,
                          SEQ_LEN, 0.1, stats)
    cfg = dict(steps=3, batch_size=8, lr=3e-3, eval_every=100, eval_batches=1, checkpoint_every=100,
               alpaca_path=None, glaive_path=None, device="cpu")
    train_sft(model, tok, data, SFTConfig(**cfg), tmp_path / "full")
    model, _, _ = load_base()
    train_sft(model, tok, data, SFTConfig(**cfg, device_batch_size=3), tmp_path / "accum")  # 3 + 3 + 2 rows
    a, b = load_weights(tmp_path / "full" / "final"), load_weights(tmp_path / "accum" / "final")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
