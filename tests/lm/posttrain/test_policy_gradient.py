"""Policy-gradient building blocks (lm/posttrain/policy_gradient.py, lm.posttrain.sft.sft_microbatch_loss) against hand-computed values.

Small tensors only: every expected number below is worked out in the comment beside it.
"""
from __future__ import annotations

import math
import statistics

import pytest
import torch

from lm.posttrain.policy_gradient import (aggregate_loss, entropy_from_logits, group_normalized_rewards, importance_ratio,
                                loss_normalizer, loss_sum, masked_mean, masked_normalize, per_token_pg_loss,
                                response_log_probs, zero_std_fraction)
from lm.posttrain.sft import sft_microbatch_loss

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
M = torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=torch.bool)


def test_masked_mean_and_normalize():
    assert masked_mean(X, M).item() == pytest.approx((1 + 2 + 5 + 6) / 4)
    assert masked_mean(X, M, dim=1).tolist() == pytest.approx([1.5, 5.5])
    assert masked_mean(X, M, dim=0).tolist() == pytest.approx([1.0, 3.5, 6.0])
    assert masked_normalize(X, M, 2.0).item() == pytest.approx(7.0)
    assert masked_normalize(X, M, 2.0, dim=-1).tolist() == pytest.approx([1.5, 5.5])
    assert masked_normalize(X, M, 2.0, dim=0).tolist() == pytest.approx([0.5, 3.5, 3.0])


def test_entropy_from_logits():
    logits = torch.stack([torch.zeros(4), torch.log(torch.tensor([1.0, 3.0, 0.0, 0.0]).clamp(min=1e-30))])
    h = entropy_from_logits(logits)
    assert h[0].item() == pytest.approx(math.log(4))  # uniform over 4
    assert h[1].item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)


class Bigram(torch.nn.Module):
    """logits of the next token = a fixed row per current token (a model we can work out by hand)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.log(torch.tensor(table)))

    def forward(self, idx):
        return self.table[idx]


def test_response_log_probs_and_entropy():
    model = Bigram([[1.0, 1.0, 1.0], [1.0, 1.0, 2.0], [1.0, 3.0, 4.0]])
    inputs = torch.tensor([[0, 1, 2]])
    targets = torch.tensor([[-1, 2, 1]])  # the prompt's token is not a response token
    out = response_log_probs(model, inputs, targets, return_entropy=True)
    assert out["log_probs"][0].tolist() == pytest.approx([0.0, math.log(0.5), math.log(3 / 8)])
    h = lambda ps: -sum(p * math.log(p) for p in ps)  # noqa: E731
    assert out["entropy"][0].tolist() == pytest.approx([math.log(3), h([.25, .25, .5]), h([1 / 8, 3 / 8, 1 / 2])])
    assert not out["entropy"].requires_grad and out["log_probs"].requires_grad


def test_response_log_probs_match_the_models_own_loss():
    from lm.model import GPT, GPTConfig
    from lm.posttrain.loop import token_logprobs

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=32, sequence_len=8, n_layer=1, n_head=2, n_kv_head=2, n_embd=16))
    x = torch.randint(0, 32, (2, 6))
    y = torch.randint(0, 32, (2, 6))
    y[:, :2] = -1
    torch.testing.assert_close(response_log_probs(gpt, x, y)["log_probs"], token_logprobs(gpt, x, y))


def test_group_normalized_rewards_each_std_and_scale():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    pop = group_normalized_rewards(r, "group", unbiased=False)  # population std: row 0 std 0.5, row 2 √0.5
    assert pop[0].tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001, -0.5 / 0.5001, 0.5 / 0.5001])
    assert pop[1].tolist() == [0.0] * 4  # no signal when every sample scores the same
    s = math.sqrt(0.5) + 1e-4
    assert pop[2].tolist() == pytest.approx([1 / s, -1 / s, 0.0, 0.0])
    sample = group_normalized_rewards(r, "group")  # TRL's: sample std, row 0 √(1/3), row 2 √(2/3)
    assert sample[0, 0].item() == pytest.approx(0.5 / (math.sqrt(1 / 3) + 1e-4))
    assert sample[2, 0].item() == pytest.approx(1 / (math.sqrt(2 / 3) + 1e-4))
    assert group_normalized_rewards(r, "none").tolist() == [[.5, -.5, -.5, .5], [0.0] * 4, [1.0, -1.0, 0.0, 0.0]]
    b = statistics.stdev(r.flatten().tolist())  # batch: the group's mean, the whole batch's std
    assert group_normalized_rewards(r, "batch")[2].tolist() == pytest.approx([1 / (b + 1e-4), -1 / (b + 1e-4), 0, 0])
    assert zero_std_fraction(r) == pytest.approx(1 / 3)


# Two responses, logp_old = 0, so ρ = exp(logp): row 0 (A=+1) ρ = 1.5, 0.5; row 1 (A=−1) ρ = 1.1, then a masked
# token.
LOGP = torch.log(torch.tensor([[1.5, 0.5], [1.1, 1.0]]))
OLD = torch.zeros(2, 2)
ADV = torch.tensor([1.0, -1.0])
MASK = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)


def _loss_and_grad(objective, loss_type, adv=ADV, **kw):
    lp = LOGP.clone().requires_grad_(True)
    per_tok, st = per_token_pg_loss(objective, lp, adv, MASK, OLD, **kw)
    loss = aggregate_loss(per_tok, MASK, loss_type, max_completion_length=4)
    loss.backward()
    return loss.item(), lp.grad, st


@pytest.mark.parametrize("loss_type,value,grad", [
    # per token −min(ρA, clip(ρ, .8, 1.2)A): −1.2 (clipped, no gradient), −0.5, +1.1; ∂/∂logp of −ρA = −ρA
    ("dapo", (-1.2 - 0.5 + 1.1) / 3, [[0, -0.5 / 3], [1.1 / 3, 0]]),            # token mean over the batch
    ("bnpo", (-1.2 - 0.5 + 1.1) / 3, [[0, -0.5 / 3], [1.1 / 3, 0]]),            # one micro-batch: the same
    ("grpo", ((-1.2 - 0.5) / 2 + 1.1) / 2, [[0, -0.5 / 4], [1.1 / 2, 0]]),      # mean per sequence, then over 2
    ("dr_grpo", (-1.2 - 0.5 + 1.1) / 8, [[0, -0.5 / 8], [1.1 / 8, 0]]),         # sum / (2 sequences × 4)
])
def test_clipped_loss_per_loss_type(loss_type, value, grad):
    loss, g, st = _loss_and_grad("grpo_clip", loss_type, epsilon=0.2)
    assert loss == pytest.approx(value, rel=1e-6)
    torch.testing.assert_close(g, torch.tensor(grad))
    assert st["clipped_high"].tolist() == [[1, 0], [0, 0]] and st["clipped_low"].sum() == 0


def test_clip_higher_and_clip_low():
    # epsilon_high 0.6: ρ = 1.5 < 1.6 is no longer clipped (DAPO's clip-higher), and now carries gradient
    loss, g, st = _loss_and_grad("grpo_clip", "dapo", epsilon=0.2, epsilon_high=0.6)
    assert loss == pytest.approx((-1.5 - 0.5 + 1.1) / 3, rel=1e-6)
    assert g[0, 0].item() == pytest.approx(-1.5 / 3) and st["clipped_high"].sum() == 0
    # A < 0: ρ = 0.5 is clipped at 0.8 (loss 0.8, no gradient), ρ = 1.3 is not (the min keeps 1.3)
    lp = torch.log(torch.tensor([[0.5, 1.3]])).requires_grad_(True)
    per_tok, st = per_token_pg_loss("grpo_clip", lp, torch.tensor([-1.0]), torch.ones(1, 2), torch.zeros(1, 2),
                                    epsilon=0.2)
    assert per_tok[0].tolist() == pytest.approx([0.8, 1.3])
    assert st["clipped_low"].tolist() == [[1, 0]] and st["clipped_high"].sum() == 0
    per_tok.sum().backward()
    assert lp.grad[0].tolist() == pytest.approx([0.0, 1.3])


def test_plain_objectives():
    # reinforce_with_baseline: −A·log π; the gradient is −A per response token, whatever ρ
    loss, g, st = _loss_and_grad("reinforce_with_baseline", "dapo")
    assert loss == pytest.approx((-(math.log(1.5) + math.log(0.5)) + math.log(1.1)) / 3, rel=1e-6)
    torch.testing.assert_close(g, torch.tensor([[-1 / 3, -1 / 3], [1 / 3, 0]]))
    assert "clipped_low" not in st
    # no_baseline: the raw rewards (1, 0) as advantages: the wrong answer gets no push down at all
    loss, g, _ = _loss_and_grad("no_baseline", "dapo", adv=torch.tensor([1.0, 0.0]))
    assert loss == pytest.approx(-(math.log(1.5) + math.log(0.5)) / 3, rel=1e-6)
    torch.testing.assert_close(g, torch.tensor([[-1 / 3, -1 / 3], [0.0, 0.0]]))


def test_kl_k3_term():
    # reference at logp = 0: k3 per token = 1/ρ + log ρ − 1; β = 0.1 adds 0.1 × the token mean
    kl = [1 / 1.5 + math.log(1.5) - 1, 1 / 0.5 + math.log(0.5) - 1, 1 / 1.1 + math.log(1.1) - 1]
    per_tok, st = per_token_pg_loss("grpo_clip", LOGP, ADV, MASK, OLD, 0.2, logp_ref=torch.zeros(2, 2), beta=0.1)
    assert masked_mean(st["kl"], MASK).item() == pytest.approx(sum(kl) / 3, rel=1e-6)
    assert aggregate_loss(per_tok, MASK, "dapo").item() == pytest.approx((-1.2 - 0.5 + 1.1 + 0.1 * sum(kl)) / 3,
                                                                          rel=1e-6)
    # β = 0: KL is still measured when a reference is given, but adds nothing to the loss
    per_tok0, st0 = per_token_pg_loss("grpo_clip", LOGP, ADV, MASK, OLD, 0.2, logp_ref=torch.zeros(2, 2), beta=0.0)
    assert aggregate_loss(per_tok0, MASK, "dapo").item() == pytest.approx(-0.2, rel=1e-6) and "kl" in st0


def test_sequence_level_ratio_is_its_definition():
    # GSPO: s_i = (Π_t ρ_t)^(1/|y_i|) over the response's own tokens (the masked one does not count)
    ratio = importance_ratio(LOGP, OLD, MASK, "sequence")
    assert ratio.shape == (2, 1)
    assert ratio.flatten().tolist() == pytest.approx([(1.5 * 0.5) ** 0.5, 1.1])
    s0 = 0.75 ** 0.5  # 0.866 is inside [0.8, 1.2]: row 0 is unclipped, every token carries −s0·A
    loss, g, st = _loss_and_grad("grpo_clip", "dapo", epsilon=0.2, importance_sampling_level="sequence")
    assert loss == pytest.approx((-2 * s0 + 1.1) / 3, rel=1e-6)
    # ∂s_i/∂logp_t = s_i / |y_i|, and each of the |y_i| tokens carries s_i: every token gets −s_i·A / 3
    torch.testing.assert_close(g, torch.tensor([[-s0 / 3, -s0 / 3], [1.1 / 3, 0.0]]))
    assert st["clipped_high"].sum() == 0


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_sum_to_the_whole_batch(loss_type):
    """The loop's split (Σ loss_sum over micro-batches / Σ loss_normalizer) equals the one-batch loss."""
    per_tok = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0], [6.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    whole = aggregate_loss(per_tok, mask, loss_type, 3).item()
    parts = [slice(0, 1), slice(1, 3)]
    split = sum(loss_sum(per_tok[c], mask[c], loss_type) for c in parts) / sum(
        loss_normalizer(mask[c], loss_type, 3) for c in parts)
    assert split.item() == pytest.approx(whole)
    # bnpo is the one that depends on the split: the mean of each micro-batch's token mean
    bnpo = sum(loss_sum(per_tok[c], mask[c], "bnpo") for c in parts) / sum(loss_normalizer(mask[c], "bnpo")
                                                                            for c in parts)
    assert bnpo.item() == pytest.approx((6 / 3 + 15 / 3) / 2)


def test_sft_microbatch_loss():
    # −(−2 − 3) over the response tokens / constant 2 / 4 accumulation steps
    lp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    loss = sft_microbatch_loss(lp, torch.tensor([[0, 1, 1]]), normalize_constant=2.0, gradient_accumulation_steps=4)
    assert loss.item() == pytest.approx(0.625)
    loss.backward()
    assert lp.grad.tolist() == [[0.0, -0.125, -0.125]]
