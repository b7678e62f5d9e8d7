"""SFT and GRPO under torchrun: 2 gloo processes on CPU (as pretraining's DDP test in test_train.py).

SFT: two ranks × two micro-batches train exactly what one process does on the
whole batch. GRPO: each rank rolls out its share of the prompts; the update is
shared (both ranks end with the same weights) and the logged metrics cover
every completion of the step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm.checkpoint import load_weights
from tests.support.posttrain_base import SEQ_LEN, tiny_base


REPO = Path(__file__).resolve().parents[2]

_RUNNER = """
import json, os, sys
import torch
from tests.support.posttrain_base import SEQ_LEN
from conf.posttrain import RLConfig, SFTConfig
from lm.checkpoint import load_model
from lm.datasets import arithmetic
from lm.posttrain.rl import as_problem, train_grpo
from lm.posttrain.sft import train_sft
from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources

# One launch for both stages (process start-up is most of the cost): SFT, then GRPO from the SFT weights.
base, out, sft_cfg, rl_cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
torch.set_num_threads(1)
rank = int(os.environ.get("RANK", 0))
# Joined once for both stages: a stage leaves a group it did not create alone (re-creating one per stage in
# the same job races on the rendezvous store).
torch.distributed.init_process_group("gloo")
model, tok, _ = load_model(base)
for stage in ("sft", "rl"):
    logged = []
    log_fn = lambda m, s: logged.append((s, m))  # noqa: E731
    if stage == "sft":
        stats = SkipStats()
        data = build_sft_data(load_sources({{}}, stats, n_identity=20, n_arithmetic=80, arithmetic_difficulty=1),
                              tok, SEQ_LEN, 0.1, stats)
        train_sft(model, tok, data, SFTConfig(**sft_cfg), os.path.join(out, stage), log_fn=log_fn)
    else:
        # A reward that differs between samples (the tiny model rarely gets a sum right, and a group of
        # equal rewards has zero advantage), so the shared update is non-zero.
        reward = lambda probs, comps: [float(sum(c.tokens) % 3) for c in comps]  # noqa: E731
        sample = lambda step: [as_problem(p)  # noqa: E731
                               for p in arithmetic.problems(rl_cfg["prompts_per_step"], step, 0)]
        train_grpo(model, tok, RLConfig(**rl_cfg), os.path.join(out, stage), sample, reward, log_fn=log_fn)
    with open(os.path.join(out, f"{{stage}}-rank{{rank}}.json"), "w") as f:
        json.dump({{"weights": [float(p.double().sum()) for p in model.parameters()], "logged": logged}}, f)
torch.distributed.destroy_process_group()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    return env


SFT = dict(steps=3, batch_size=8, lr=3e-3, eval_every=3, eval_batches=1, checkpoint_every=2, log_every=1,
           alpaca_path=None, glaive_path=None, device="cpu")
RL = dict(task="arithmetic", difficulty=0, steps=2, prompts_per_step=4, samples_per_prompt=2, max_new_tokens=6,
          lr=1e-3, eval_prompts=2, eval_samples=1, eval_every=100, checkpoint_every=100, device_batch_size=2,
          device="cpu")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    """One torchrun launch, 2 gloo ranks: SFT (2 ranks × 2 micro-batches × 2 rows), then GRPO."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "runner.py"
    script.write_text(_RUNNER.format(tests=str(Path(__file__).resolve().parent)))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(tiny_base()), str(out), json.dumps({**SFT, "device_batch_size": 2}),
                        json.dumps(RL)], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def _ranks(out: Path, stage: str) -> list[dict]:
    return [json.loads((out / f"{stage}-rank{i}.json").read_text()) for i in range(2)]


def test_two_process_sft_matches_one_process_on_the_whole_batch(ddp, tmp_path):
    from conf.posttrain import SFTConfig
    from lm.checkpoint import load_model
    from lm.posttrain.sft import train_sft
    from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources

    ranks = _ranks(ddp, "sft")
    model, tok, _ = load_model(tiny_base())
    stats = SkipStats()
    data = build_sft_data(load_sources({}, stats, n_identity=20, n_arithmetic=80, arithmetic_difficulty=1), tok,
                          SEQ_LEN, 0.1, stats)
    seen = {}
    train_sft(model, tok, data, SFTConfig(**SFT), tmp_path / "single", log_fn=lambda m, s: seen.setdefault(s, m))
    a, b = load_weights(tmp_path / "single" / "final"), load_weights(ddp / "sft" / "final")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # Only rank 0 logs; its train loss is the whole batch's (both ranks' tokens).
    assert ranks[1]["logged"] == []
    ddp_loss = {s: m["train_loss"] for s, m in ranks[0]["logged"] if "train_loss" in m}
    assert sorted(ddp_loss) == [1, 2, 3]
    for s in (1, 2, 3):
        assert abs(ddp_loss[s] - seen[s]["train_loss"]) < 1e-4 * abs(seen[s]["train_loss"]), s


def test_two_process_grpo_shares_rollouts_and_updates(ddp):
    ranks = _ranks(ddp, "rl")
    assert ranks[0]["weights"] == ranks[1]["weights"]  # one shared update, not two diverging policies
    assert ranks[0]["weights"] != _ranks(ddp, "sft")[0]["weights"]  # and GRPO did move the SFT weights
    steps = [m for _, m in ranks[0]["logged"] if "reward_mean" in m]
    assert len(steps) == 2 and ranks[1]["logged"] == []
    for m in steps:
        assert m["completions"] == 4 * 2  # both ranks' rollouts are in rank 0's metrics
        assert m["gen_tokens_per_s"] > 0 and 1 <= m["response_len"] <= 6
    assert (ddp / "rl" / "final" / "model.safetensors").exists()
