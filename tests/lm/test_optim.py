"""Optimizer builder: parameter groups, Muon's orthogonalised update, state round trip."""
import torch

from lm.model import GPT, GPTConfig
from lm.optim import MultiOptimizer, build_optimizer, param_groups, set_lr, zeropower_via_newtonschulz5


def _model():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_depth(2, 300, 32))


def test_groups_cover_every_parameter_once_and_spare_embeddings_from_decay():
    m = _model()
    groups = param_groups(m)
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())
    assert groups["embedding"] == [m.transformer.wte.weight] and groups["head"] == [m.lm_head.weight]
    opt = build_optimizer(m, lr=1e-3, embedding_lr=1e-2, weight_decay=0.1)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["embedding"]["weight_decay"] == 0.0 and by_name["embedding"]["lr"] == 1e-2
    assert by_name["matrix"]["weight_decay"] == 0.1
    set_lr(opt, 0.5)
    assert by_name["embedding"]["lr"] == 5e-3 and by_name["matrix"]["initial_lr"] == 1e-3


def test_newton_schulz_makes_singular_values_near_one():
    g = torch.randn(3, 64, 128)
    s = torch.linalg.svdvals(zeropower_via_newtonschulz5(g))
    assert s.min() > 0.5 and s.max() < 1.3  # quintic NS: roughly orthogonal, by design not exactly


def test_muon_optimizer_steps_and_state_round_trips():
    m = _model()
    opt = build_optimizer(m, optimizer="muon", lr=1e-3, muon_lr=0.02)
    assert isinstance(opt, MultiOptimizer)
    assert {g["name"] for g in opt.param_groups} == {"embedding", "head", "matrix"}
    x = torch.randint(0, 300, (2, 32))
    before = m.transformer.h[0].mlp.c_proj.weight.clone()
    m(x, x).backward()
    opt.step()
    assert not torch.equal(before, m.transformer.h[0].mlp.c_proj.weight)
    state = opt.state_dict()
    m2 = _model()
    opt2 = build_optimizer(m2, optimizer="muon")
    opt2.load_state_dict(state)
    buf = opt.optimizers[1].state[m.transformer.h[0].mlp.c_proj.weight]["momentum_buffer"]
    buf2 = opt2.optimizers[1].state[m2.transformer.h[0].mlp.c_proj.weight]["momentum_buffer"]
    assert torch.equal(buf, buf2)
