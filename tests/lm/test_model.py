"""GPT model: KV cache equals full recomputation (incl. left-padded batches), GQA, sizes."""
import pytest
import torch

from lm.model import GPT, GPTConfig, KVCache


def _model(n_kv_head=2, seed=0, n_layer=2, noise=0.02, **options) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=97, sequence_len=32, n_layer=n_layer, n_head=4, n_kv_head=n_kv_head, n_embd=64,
                    **options)
    m = GPT(cfg)
    with torch.no_grad():  # zero-init projections would hide attention bugs
        for p in m.parameters():
            p.add_(noise * torch.randn_like(p))
    return m.eval()


# GQA widths, and the recipe's cheap architecture options (tests/lm/test_recipe_options.py),
# which must keep the KV-cache contract too
@pytest.mark.parametrize("options", [{"n_kv_head": 4}, {"n_kv_head": 2}, {"n_kv_head": 1},
                                     {"value_embeds": True, "n_layer": 3, "noise": 0.05},
                                     {"qk_norm": False, "n_layer": 3, "noise": 0.05},
                                     {"resid_scalars": True, "n_layer": 3, "noise": 0.05}])
def test_incremental_decoding_matches_full_forward(options):
    m = _model(**options)
    x = torch.randint(0, 97, (2, 12))
    full = m(x)
    cache = KVCache(2, 16, m.config)
    parts = [m(x[:, :5], kv_cache=cache)] + [m(x[:, t:t + 1], kv_cache=cache) for t in range(5, 12)]
    assert torch.allclose(full, torch.cat(parts, 1), atol=1e-5)


def test_left_padded_rows_match_unpadded_rows():
    m = _model()
    a = torch.randint(0, 97, (1, 6))
    b = torch.randint(0, 97, (1, 10))
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), a], 1), b])
    pad = torch.ones(2, 10, dtype=torch.bool)
    pad[0, :4] = False
    cache = KVCache(2, 16, m.config)
    out = m(batch, kv_cache=cache, pad_mask=pad)
    assert torch.allclose(out[0, 4:], m(a)[0], atol=1e-5)
    assert torch.allclose(out[1], m(b)[0], atol=1e-5)
    step = m(torch.tensor([[3], [4]]), kv_cache=cache)
    assert torch.allclose(step[0, 0], m(torch.cat([a, torch.tensor([[3]])], 1))[0, -1], atol=1e-5)
    assert torch.allclose(step[1, 0], m(torch.cat([b, torch.tensor([[4]])], 1))[0, -1], atol=1e-5)


def test_expand_forks_a_prefilled_cache():
    m = _model()
    x = torch.randint(0, 97, (1, 7))
    cache = KVCache(1, 12, m.config)
    m(x, kv_cache=cache)
    forked = cache.expand(3)
    nxt = torch.tensor([[1], [2], [3]])
    out = m(nxt, kv_cache=forked)
    for i in range(3):
        ref = m(torch.cat([x, nxt[i:i + 1]], 1))[0, -1]
        assert torch.allclose(out[i, 0], ref, atol=1e-5)


def test_cache_overflow_is_a_clear_error():
    m = _model()
    cache = KVCache(1, 4, m.config)
    with pytest.raises(ValueError, match="KV cache overflow"):
        m(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)


def test_loss_mask_ignores_minus_one_targets():
    m = _model()
    x = torch.randint(0, 97, (1, 8))
    y = x.clone()
    y[0, :4] = -1
    per_tok = m(x, targets=x, loss_reduction="none")
    assert torch.allclose(m(x, targets=y), per_tok[0, 4:].mean(), atol=1e-6)


def test_from_depth_presets_have_expected_size():
    cfg = GPTConfig.from_depth(12, vocab_size=50304, sequence_len=1024)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head) == (12, 768, 12)
    with torch.device("meta"):
        n = GPT(cfg).num_params()
    assert 120e6 < n < 170e6  # GPT-2 small class (untied head adds 38M)
    d20 = GPTConfig.from_depth(20, vocab_size=65536, sequence_len=2048)
    with torch.device("meta"):
        n20 = GPT(d20).num_params()
    assert 450e6 < n20 < 650e6
