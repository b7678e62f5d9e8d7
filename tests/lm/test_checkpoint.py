"""Loading a checkpoint trusts nothing in it: checksums, finite weights, config ranges, matching tokenizer.

The checkpoints are GENERATED here (a tiny random GPT and a tokenizer trained on
a few sentences), then damaged the ways files get damaged.
"""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm.checkpoint import CheckpointError, file_sha256, load_model, load_train_state, save_checkpoint
from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]
TEXT = ["The quick brown fox jumps over the lazy dog.", "A stitch in time saves nine.",
        "What is 12+7? The answer is 19."] * 20


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(TEXT, vocab_size=300)


@pytest.fixture
def ckpt(tmp_path, tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=32))
    ts = {"step": 3, "optimizer": {"state": {}, "param_groups": []}, "rng": {}, "data": {}, "extra": {}}
    return save_checkpoint(tmp_path / "ckpt", model, tok, {"kind": "test", "step": 3}, train_state=ts)


def _edit_config(d: Path, fn) -> None:
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def _resum(d: Path, name: str) -> None:
    """Record a file's current checksum: a consistent checkpoint that is wrong in another way."""
    _edit_config(d, lambda c: c["checksums"].__setitem__(name, file_sha256(d / name)))


def test_checksums_written_and_verified(ckpt):
    sums = json.loads((ckpt / "config.json").read_text())["checksums"]
    assert set(sums) == {"model.safetensors", "tokenizer.json", "train_state.pt"}
    model, tok, meta = load_model(ckpt)
    assert meta["kind"] == "test" and tok.vocab_size == model.config.vocab_size


def test_random_bytes_in_tensor_data_are_caught(ckpt):
    path = ckpt / "model.safetensors"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 20_000] = os.urandom(min(20_000, len(data) - mid))
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match its sha256"):
        load_model(ckpt)


@pytest.mark.parametrize("checksums", [True, False], ids=["with-checksums", "old-checkpoint"])
def test_nan_weights_are_refused(ckpt, tok, tmp_path, checksums):
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=32))
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    d = save_checkpoint(tmp_path / "nan", model, tok, {"kind": "test"})
    if not checksums:
        _edit_config(d, lambda c: c.pop("checksums"))
    with pytest.raises(CheckpointError, match=r"tensor transformer\.h\.0\.mlp\.c_fc\.weight holds NaN or Inf"):
        load_model(d)


def test_old_checkpoint_without_checksums_loads_with_a_warning(ckpt, caplog):
    _edit_config(ckpt, lambda c: c.pop("checksums"))
    with caplog.at_level(logging.WARNING, logger="lm.checkpoint"):
        model, _, _ = load_model(ckpt)
    assert model.config.n_embd == 32
    assert "no checksums" in caplog.text and "re-save" in caplog.text


def test_tokenizer_of_another_model_is_refused(ckpt):
    other = Tokenizer.train(TEXT[:3], vocab_size=280)
    (ckpt / "tokenizer.json").write_text(other.to_json())
    with pytest.raises(CheckpointError, match="tokenizer.json does not match its sha256"):
        load_model(ckpt)
    _resum(ckpt, "tokenizer.json")
    with pytest.raises(CheckpointError, match=rf"vocabulary of {other.vocab_size} tokens but the model .* has 3\d\d"):
        load_model(ckpt)


@pytest.mark.parametrize("field,value,needle", [
    ("vocab_size", "1024", "vocab_size must be a positive integer, got '1024'"),
    ("n_embd", -128, "n_embd must be a positive integer, got -128"),
    ("n_head", 3, "n_head 3 must divide n_embd 32"),
    ("n_kv_head", 0, "n_kv_head must be a positive integer"),
    ("rope_base", float("nan"), "rope_base must be a finite number"),
    ("sequence_len", 10**8, "needs ~.* GiB, over the limit of"),
])
def test_bad_config_fields_are_one_clear_error(ckpt, field, value, needle):
    _edit_config(ckpt, lambda c: c["model"].__setitem__(field, value))
    with pytest.raises(CheckpointError, match=needle) as e:
        load_model(ckpt)
    assert "config.json: model." in str(e.value)


def test_memory_limit_is_configurable(ckpt):
    with pytest.raises(CheckpointError, match="over the limit of 0.0 GiB"):
        load_model(ckpt, max_memory_bytes=1024)


@pytest.mark.parametrize("checksums", [True, False], ids=["with-checksums", "old-checkpoint"])
def test_garbage_train_state_is_a_clear_error_never_advice_to_unpickle(ckpt, checksums):
    (ckpt / "train_state.pt").write_bytes(b"PK\x03\x04" + os.urandom(4000))
    if not checksums:
        _edit_config(ckpt, lambda c: c.pop("checksums"))
    with pytest.raises(CheckpointError) as e:
        load_train_state(ckpt)
    msg = str(e.value)
    assert "train_state.pt" in msg and "weights_only" not in msg and "pickle" not in msg.replace("unpickled", "")
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_cli_reports_a_corrupt_checkpoint_in_one_line_exit_2(ckpt):
    _edit_config(ckpt, lambda c: c["model"].__setitem__("n_head", 3))
    r = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "chat", "--model", str(ckpt)], cwd=REPO,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr
    assert str(ckpt / "config.json") in err[0] and "n_head 3 must divide n_embd 32" in err[0]
