"""Deterministic, resumable batches of token windows for pretraining.

A split (lm.tokens.TokenShards) is one stream of ids; it is cut into
non-overlapping windows of `seq_len + 1` ids (inputs and shifted targets).
Each epoch visits the windows in a permutation drawn from `(seed, epoch)`, so
the order depends on nothing but the seed and the data.

The loader's whole position is a small dict (`state_dict()`): epoch, cursor
into that epoch's permutation, plus what must match on resume (seed, window
count, seq_len). It goes into the checkpoint; `load_state_dict` restores it.

Data parallel: every call consumes `batch_size × world_size` windows of the
global order and rank r keeps the r-th block of `batch_size`. So N ranks with
batch B see exactly the windows that one process with batch N·B (or B with N
accumulation steps) would see, in the same order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from lm.tokens import TokenShards


class TokenBatchLoader:
    """Shuffled windows of a token split, `(inputs, targets)` int64 (B, T) per call."""

    def __init__(self, tokens: str | Path | TokenShards, batch_size: int, seq_len: int, split: str = "train",
                 seed: int = 0, rank: int = 0, world_size: int = 1, pin_memory: bool = False):
        self.pin_memory = pin_memory  # page-locked batches copy to the GPU asynchronously
        self.shards = tokens if isinstance(tokens, TokenShards) else TokenShards(tokens, split)
        self.batch_size, self.seq_len = batch_size, seq_len
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.n_windows = max(0, (self.shards.n_tokens - 1) // seq_len)
        need = batch_size * world_size
        if self.n_windows < need:
            raise ValueError(
                f"split {self.shards.split!r} of {self.shards.dir} has {self.shards.n_tokens} tokens = "
                f"{self.n_windows} windows of {seq_len}, fewer than one global batch ({need} windows): "
                "tokenize more text or lower device_batch_size/sequence_len")
        self.epoch, self.cursor = 0, 0
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            self._perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_windows)
            self._perm_epoch = self.epoch
        return self._perm

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (inputs, targets), and advance the global position."""
        step = self.batch_size * self.world_size
        if self.cursor + step > self.n_windows:  # drop the ragged end of an epoch
            self.epoch, self.cursor = self.epoch + 1, 0
        perm = self._permutation()
        lo = self.cursor + self.rank * self.batch_size
        windows = perm[lo:lo + self.batch_size]
        self.cursor += step
        T = self.seq_len
        buf = np.stack([self.shards.read(int(w) * T, T + 1) for w in windows])
        t = torch.from_numpy(buf)
        if self.pin_memory:
            t = t.pin_memory()
        return t[:, :-1], t[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """The loader position: small, plain ints (safe for weights_only loading)."""
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed,
                "n_windows": self.n_windows, "seq_len": self.seq_len,
                "global_batch": self.batch_size * self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuses data or shapes that changed."""
        for key in ("seed", "n_windows", "seq_len", "global_batch"):
            mine = self.state_dict()[key]
            if key in state and int(state[key]) != mine:
                raise ValueError(
                    f"cannot resume the data order: checkpoint has {key}={state[key]}, this run has {mine} "
                    "(different token data, seed, sequence_len or global batch); start a fresh run instead")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def eval_batches(tokens: str | Path | TokenShards, batch_size: int, seq_len: int, max_tokens: int,
                 split: str = "val", rank: int = 0, world_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `max_tokens` of a split as (inputs, targets) batches, this rank's share.

    Always the same windows in the same order, so validation numbers are
    comparable across steps and runs. Returns [] if the split is too small for
    one window per rank.
    """
    shards = tokens if isinstance(tokens, TokenShards) else TokenShards(tokens, split)
    n = min((shards.n_tokens - 1) // seq_len, max(1, max_tokens // seq_len))
    per_rank = n // world_size
    if per_rank <= 0:
        return []
    first = rank * per_rank
    out = []
    for lo in range(first, first + per_rank, batch_size):
        hi = min(lo + batch_size, first + per_rank)
        buf = np.stack([shards.read(w * seq_len, seq_len + 1) for w in range(lo, hi)])
        t = torch.from_numpy(buf)
        out.append((t[:, :-1], t[:, 1:]))
    return out
