"""The report card from what stages left under a run root (GENERATED stage outputs, real matplotlib)."""
import json

from tasks.report import build_report


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_report_card_partial_run(tmp_path):
    root = tmp_path / "run"
    _write(root / "curate" / "stats.json", {
        "inputs": 2, "shards": 2, "documents": 30,
        "stages": [{"stage": "read", "in": 100, "kept": 80, "dropped": {"non_html": 20}},
                   {"stage": "language", "in": 80, "kept": 30, "dropped": {"not_en": 50}}]})
    _write(root / "tokenize" / "tokens" / "meta.json", {
        "vocab_size": 512, "n_tokens": 1200, "dtype": "uint16",
        "shards": [{"path": "train_00000.bin", "split": "train", "n_tokens": 1000},
                   {"path": "val_00000.bin", "split": "val", "n_tokens": 200}]})
    _write(root / "sft" / "manifest.json", {"checkpoint": "/x/final", "final_loss": 1.25, "steps": 10})
    evaluation = {"main": "sft", "models": {
        "sft": {"val_bpb": 2.5, "gsm8k_pass@1": 0.1, "arith_acc_tool": 0.6, "arith_acc_no_tool": 0.2,
                "chat_compliance": 0.9},
        "rl": {"error": "CheckpointError: gone"}}}
    path = build_report(root, tmp_path / "report", evaluation, with_mlflow=False)
    md = path.read_text()
    assert "| language | 80 | 30 | not_en: 50 |" in md
    assert "| val_tokens | 200 |" in md
    assert "| final_loss | 1.25 |" in md
    assert "## pretrain\n\nnot run" in md and "## dpo\n\nnot run" in md
    assert "| gsm8k_pass@1 | 0.1 |" in md and "rl: evaluation failed: CheckpointError: gone" in md
    for png in ("funnel.png", "eval.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md
    assert not (tmp_path / "report" / "losses.png").exists()  # no MLflow runs → no curves, no error


def test_report_card_empty_root(tmp_path):
    md = build_report(tmp_path / "nothing", tmp_path / "r", with_mlflow=False).read_text()
    assert md.count("not run") == 9
