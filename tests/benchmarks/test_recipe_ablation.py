"""benchmarks/recipe_ablation.py: fresh-clone tokens from data/text, same batches for every variant, Δ table.

A few steps of the tiny shape; the token shards are GENERATED from the real
text in data/text (what a fresh clone without the demo's output trains on).
"""
import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("recipe_ablation", REPO / "benchmarks" / "recipe_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_train_on_the_same_batches_and_print_differences(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "res.json"
    rc = bench.main(["--shape", "tiny", "--build-tokens", "--work", str(tmp_path), "--steps", "3", "--eval-at", "1,3",
                     "--batch", "2", "--eval-tokens", "512", "--threads", "1", "--json", str(out),
                     "--variants", "lr*1,muon_lr*4+value_embeds=false"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["token_source"] == "generated" and (tmp_path / "tokens-GENERATED" / "tokens" / "meta.json").exists()
    assert res["vocab_size"] > 1000 and res["shape"]["steps"] == 3 and res["shape"]["eval_at"] == [1, 3]
    r = res["results"]
    assert list(r) == ["default", "lr*1", "muon_lr*4+value_embeds=false"]
    d, same, other = (r[k]["evals"] for k in r)
    # same init, same batches, same recipe: identical numbers; a different recipe: different ones
    assert d == same
    assert other["3"]["val_loss"] != d["3"]["val_loss"]
    assert r["muon_lr*4+value_embeds=false"]["recipe"]["muon_lr"] == pytest.approx(4 * r["default"]["recipe"]["muon_lr"])
    for ev in (d, other):
        assert set(ev) == {"1", "3"} and all(math.isfinite(v["val_loss"]) and v["val_bpb"] > 0 for v in ev.values())
        assert ev["3"]["val_loss"] < ev["1"]["val_loss"] < math.log(res["vocab_size"]) + 1
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| muon_lr*4+value_embeds=false |"))
    delta = other["3"]["val_loss"] - d["3"]["val_loss"]
    assert f"({delta:+.3f})" in row and "load average" in text


def test_a_bad_variant_is_refused_before_any_training(tmp_path):
    bench = _bench()
    with pytest.raises(ValueError, match="unknown setting 'muon_betas'"):
        bench.main(["--tokens", str(tmp_path / "none"), "--variants", "muon_betas=0.9"])
    with pytest.raises(ValueError, match="not a numeric setting"):
        bench.resolve_variant("schedule*2", bench.preset("tiny"))


def test_a_schedule_only_variant_starts_from_the_earlier_state_and_matches_a_run_from_scratch(tmp_path, capsys):
    """`warmup_steps=2+decay_frac=0.9` parts from `warmup_steps=2` (decay_frac 0.3) at step 3 of 8: it reuses
    that run's first 3 steps (and the eval at step 2) and must end exactly where training it from step 0 ends."""
    bench = _bench()
    variants = "warmup_steps=2,warmup_steps=2+decay_frac=0.9"
    common = ["--shape", "tiny", "--build-tokens", "--work", str(tmp_path), "--steps", "8", "--eval-at", "2,8",
              "--batch", "2", "--eval-tokens", "512", "--threads", "1", "--variants", variants]
    assert bench.main([*common, "--json", str(tmp_path / "branch.json")]) == 0
    assert bench.main([*common, "--no-branch", "--json", str(tmp_path / "scratch.json")]) == 0
    branch = json.loads((tmp_path / "branch.json").read_text())["results"]
    scratch = json.loads((tmp_path / "scratch.json").read_text())["results"]
    late = "warmup_steps=2+decay_frac=0.9"
    assert branch[late]["branched_from"] == {"variant": "warmup_steps=2", "step": 3}
    assert "branched_from" not in scratch[late] and "branched_from" not in branch["warmup_steps=2"]
    assert "branched_from" not in branch["default"]  # warmup 10 ≠ 2: parts at step 0
    assert branch[late]["evals"] == scratch[late]["evals"]  # bit for bit, the eval at 8 trained after the branch
    assert branch[late]["evals"]["8"] != branch["warmup_steps=2"]["evals"]["8"]
    assert "steps 1–3 (and the evals there) are `warmup_steps=2`'s" in capsys.readouterr().out
