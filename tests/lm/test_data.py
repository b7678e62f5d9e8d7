"""Token batch loader: deterministic order, resumable position, DDP slicing.

Token shards are GENERATED here (random ids), labelled `generated-test`.
"""
import numpy as np
import pytest
import torch

from lm.data import TokenBatchLoader, eval_batches
from lm.tokens import ShardWriter, shard_name, write_meta


@pytest.fixture()
def tokens(tmp_path):
    rng = np.random.default_rng(0)
    shards = []
    for split, i, n_docs in [("train", 0, 30), ("train", 1, 20), ("val", 0, 5)]:
        with ShardWriter(tmp_path / "tokens" / shard_name(split, i), 100, 99) as w:
            for _ in range(n_docs):
                w.add(rng.integers(0, 99, rng.integers(5, 40)))
        shards.append({"path": shard_name(split, i), "split": split, "n_tokens": w.n_tokens,
                       "n_docs": w.n_docs, "source": "generated-test"})
    write_meta(tmp_path / "tokens", {"dtype": "uint16", "vocab_size": 100, "bos_id": 99, "shards": shards,
                                     "n_tokens": sum(s["n_tokens"] for s in shards)})
    return tmp_path


def test_targets_are_inputs_shifted_and_order_is_seeded(tokens):
    a = TokenBatchLoader(tokens, 4, 16, seed=1)
    x, y = a.next_batch()
    assert x.shape == (4, 16) and x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
    b = TokenBatchLoader(tokens, 4, 16, seed=1)
    assert torch.equal(b.next_batch()[0], x)
    assert not torch.equal(TokenBatchLoader(tokens, 4, 16, seed=2).next_batch()[0], x)


def test_position_resumes_exactly_across_epochs(tokens):
    a = TokenBatchLoader(tokens, 4, 16, seed=3)
    for _ in range(a.n_windows // 4 + 3):  # past an epoch boundary
        a.next_batch()
    state = a.state_dict()
    assert state["epoch"] == 1
    want = [a.next_batch()[0] for _ in range(5)]
    b = TokenBatchLoader(tokens, 4, 16, seed=3)
    b.load_state_dict(state)
    assert all(torch.equal(w, b.next_batch()[0]) for w in want)


def test_ranks_split_the_single_process_batch(tokens):
    single = TokenBatchLoader(tokens, 6, 16, seed=5)
    ranks = [TokenBatchLoader(tokens, 2, 16, seed=5, rank=r, world_size=3) for r in range(3)]
    for _ in range(4):
        whole = single.next_batch()[0]
        assert torch.equal(torch.cat([r.next_batch()[0] for r in ranks]), whole)


def test_resume_with_other_data_or_batch_is_refused(tokens):
    state = TokenBatchLoader(tokens, 4, 16).state_dict()
    with pytest.raises(ValueError, match="cannot resume the data order"):
        TokenBatchLoader(tokens, 4, 8).load_state_dict(state)
    with pytest.raises(ValueError, match="cannot resume the data order"):
        TokenBatchLoader(tokens, 2, 16).load_state_dict(state)


def test_too_little_data_names_the_fix(tokens):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TokenBatchLoader(tokens, 4, 64, split="val")


def test_eval_batches_are_fixed_and_split_across_ranks(tokens):
    whole = torch.cat([x for x, _ in eval_batches(tokens, 2, 8, 10_000)])
    parts = [torch.cat([x for x, _ in eval_batches(tokens, 2, 8, 10_000, rank=r, world_size=2)]) for r in range(2)]
    n = len(whole) // 2
    assert torch.equal(torch.cat(parts), whole[:2 * n])
