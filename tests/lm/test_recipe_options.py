"""Cheap architecture options of the recipe ablation: value embeddings, residual scalars, QK-norm off, schedules.

Value embeddings must keep the KV-cache contract (incremental decoding equals
the full forward: tests/lm/test_model.py, with the GQA cases) and put their tables in the `embedding` optimizer group;
old checkpoints (configs without the new fields) still load with the
defaults.
"""
import pytest
import torch

from lm.model import GPT, GPTConfig
from lm.optim import param_groups
from lm.schedule import lr_multiplier, wd_multiplier


def _model(**options) -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=97, sequence_len=32, n_layer=3, n_head=4, n_kv_head=2, n_embd=64, **options))
    with torch.no_grad():  # zero-init projections/gates would hide bugs
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def test_value_embeddings_sit_on_alternate_layers_and_change_the_output():
    m = _model(value_embeds=True)
    assert sorted(m.value_embeds) == ["0", "2"]  # 3 layers: the last one and every other one before it
    assert m.transformer.h[1].attn.ve_gate is None
    groups = param_groups(m)
    ve_ids = {id(ve.weight) for ve in m.value_embeds.values()}
    assert ve_ids <= {id(p) for p in groups["embedding"]}  # embedding lr, no weight decay
    assert m.num_params(exclude_embedding=True) == m.num_params() - 97 * 64 - 2 * 97 * 32
    x = torch.randint(0, 97, (1, 10))
    plain = _model()
    assert not torch.allclose(m(x), plain(x))


def test_residual_scalars_start_as_the_plain_model_and_learn_in_the_other_group():
    """λ_resid = 1 and λ_x0 = 0 at init: the same function as without them, until training moves them."""
    plain = _model()  # noised weights: zero-init projections would make every layer's input ∝ x0
    scaled = GPT(GPTConfig(**{**plain.config.to_dict(), "resid_scalars": True})).eval()
    own = dict(scaled.named_parameters())
    with torch.no_grad():
        for name, p in plain.named_parameters():
            own[name].copy_(p)
    x = torch.randint(0, 97, (2, 10))
    assert torch.equal(plain(x), scaled(x))
    groups = param_groups(scaled)
    assert {id(scaled.resid_lambdas), id(scaled.x0_lambdas)} <= {id(p) for p in groups["other"]}
    assert scaled.num_params() == plain.num_params() + 2 * 3
    with torch.no_grad():
        scaled.x0_lambdas.fill_(0.5)
        scaled.resid_lambdas[1] = 0.7
    assert not torch.allclose(plain(x), scaled(x))
    y = torch.randint(0, 97, (2, 10))
    torch.nn.functional.cross_entropy(scaled(x).flatten(0, 1), y.flatten()).backward()
    assert scaled.x0_lambdas.grad.abs().sum() > 0 and scaled.resid_lambdas.grad.abs().sum() > 0


def test_configs_without_the_new_fields_load_with_their_defaults():
    old = GPTConfig().to_dict()
    for k in ("qk_norm", "value_embeds", "resid_scalars"):
        old.pop(k)
    cfg = GPTConfig.from_dict(old)
    assert cfg.qk_norm is True and cfg.value_embeds is False and cfg.resid_scalars is False
    with pytest.raises(ValueError, match="value_embeds"):
        GPTConfig(value_embeds="yes").validate()


def test_warmdown_shapes_and_weight_decay_schedule():
    lin = [lr_multiplier(s, 100, 0, "wsd", 0.0, 0.6) for s in range(101)]
    assert lin[:40] == [1.0] * 40 and lin[70] == pytest.approx(0.5) and lin[100] == 0.0
    sq = lr_multiplier(70, 100, 0, "wsd", 0.0, 0.6, "sqrt")
    cos = lr_multiplier(70, 100, 0, "wsd", 0.0, 0.6, "cosine")
    assert sq == pytest.approx(1 - 0.5 ** 0.5) and cos == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 0, "wsd", 0.1, 0.6, "sqrt") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay_shape"):
        lr_multiplier(0, 10, 0, "wsd", decay_shape="step")
    assert [wd_multiplier(s, 4, "linear") for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert wd_multiplier(3, 4) == 1.0
    with pytest.raises(ValueError, match="weight-decay schedule"):
        wd_multiplier(0, 4, "cosine")
