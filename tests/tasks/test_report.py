"""The report card from what stages left under a run root (GENERATED stage outputs, real matplotlib)."""
import json

import pytest

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
    # each eval metric says what it measures, with its items and how many
    assert "| gsm8k_pass@1 | ? GSM8K word problems (held out): fraction of sampled answers right | 0.1 |" in md
    assert "rl: evaluation failed: CheckpointError: gone" in md
    for png in ("funnel.png", "eval.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md
    assert not (tmp_path / "report" / "losses.png").exists()  # no MLflow runs → no curves, no error


def test_report_card_empty_root(tmp_path):
    md = build_report(tmp_path / "nothing", tmp_path / "r", with_mlflow=False).read_text()
    assert md.count("not run") == 9


def test_curves_put_loss_and_bpb_on_separate_labelled_axes_and_smooth_noisy_reward():
    from tasks.report import curve_panels, curves_figure, smooth

    curves = {"pretrain": {"train_loss": [(i, 8.0 - i / 10) for i in range(30)],
                           "val_bpb": [(0, 3.1), (50, 2.9), (100, 2.8)]},
              "rl": {"reward": [(i, float(i % 2)) for i in range(30)]}}
    panels = curve_panels(curves)
    assert [(t, y, sorted(m)) for t, y, m in panels] == [
        ("pretrain: bits per byte", "bits per byte", ["val_bpb"]),
        ("pretrain: loss", "loss", ["train_loss"]),
        ("rl: reward", "reward", ["reward"])]
    fig = curves_figure(curves)
    axes = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_ylabel() for ax in axes] == ["bits per byte", "loss", "reward"]
    assert all(ax.get_xlabel() == "step" for ax in axes)
    # the 0/1 reward gets a moving average beside the raw series, flatter than it
    rl_lines = axes[2].get_lines()
    assert len(rl_lines) == 2
    raw, avg = rl_lines[0].get_ydata(), rl_lines[1].get_ydata()
    assert max(avg[10:]) - min(avg[10:]) < 0.5 * (max(raw) - min(raw))
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # bias-corrected: a constant stays put


def test_eval_bars_carry_their_values():
    from tasks.report import eval_figure

    fig = eval_figure({"sft": {"arith_acc_no_tool": 0.0, "chat_compliance": 0.9},
                       "rl": {"arith_acc_no_tool": 0.25, "chat_compliance": 0.8}})
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == ["0.00", "0.25", "0.80", "0.90"]
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel()


def test_what_each_stage_shows_gives_the_number_and_its_interval(tmp_path):
    from tasks.report import Notes, stage_findings, wilson

    lo, hi = wilson(18, 33)
    assert 0.37 < lo < 0.39 and 0.69 < hi < 0.71  # 18/33 = 0.55: not above chance with 33 pairs
    root = tmp_path / "run"
    _write(root / "tokenize" / "tokens" / "meta.json",
           {"vocab_size": 4096, "splits": {"val": {"n_tokens": 1000, "n_bytes": 3500}}})
    _write(root / "pretrain" / "manifest.json", {"val_bpb": 2.79})
    _write(root / "rl" / "manifest.json", {"task": "arithmetic", "pass@1_before": 0.2, "pass@1_after": 0.3,
                                           "config": {"eval_prompts": 32, "eval_samples": 4}})
    _write(root / "reward" / "manifest.json", {
        "val_accuracy": 0.8, "n_val": 100, "n_train": 400,
        "val_by_source": {"generated_prefs": {"accuracy": 0.95, "n": 60}, "hh": {"accuracy": 0.55, "n": 40}},
        "val_by_source_start": {"generated_prefs": {"accuracy": 0.5, "n": 60}, "hh": {"accuracy": 0.5, "n": 40}}})
    _write(root / "dpo" / "manifest.json", {"n_train": 3, "n_val": 0, "val": {}})
    _write(root / "evaluate" / "samples.jsonl", {"model": "sft", "prompt": "Hello! Who are you?",
                                                  "reply": "I am crawl2chat, a small chat assistant."})
    evaluation = {"config": {"compliance_n": 10}, "models": {"pretrain": {"chat_compliance": 0.0},
                                                             "sft": {"chat_compliance": 0.9}}}
    notes = Notes()
    lines = "\n".join(stage_findings(root, evaluation, notes))
    # each line: what was measured (items, how many) first, then the figure, then what it means
    assert "- **pretrain** — *Measured:* how well the base model predicts held-out text it never trained on " \
           "(1,000 tokens, 3,500 bytes of the curated text). *Result:* **2.790 bits per byte**" in lines
    assert "a uniform guess over the 4096 tokens scores 3.43" in lines  # 12 bits per 3.5 bytes
    assert "replies to 10 prompts" in lines and "not whether a reply is right" in lines
    assert "**0.90** of the replies keep the format (the base model: 0.00)" in lines and "(names its persona)" in lines
    assert "32 held-out prompts, 4 sampled answers each" in lines and "pass@1 **0.20 → 0.30** (up, within chance¹)" in lines
    assert "**0.80** of the pairs ranked right, above chance; by source: generated_prefs 0.95 (from 0.50), " \
           "topics never trained on; hh 0.55 (from 0.50)²" in lines
    assert "dpo** — no held-out pairs (3 training pairs" in lines
    # the statistics are footnotes, not in the lines
    assert "95% CI" not in lines and "McNemar" not in lines
    assert "the 95% intervals overlap" in notes.items[0] and "n=128" in notes.items[0]
    assert "generated_prefs 0.95 (95% CI 0.86–0.98, n=60)" in notes.items[1] and "hh 0.55 (95% CI 0.40–0.69" in notes.items[1]
    # RL clearly up (intervals apart) and DPO's margin with its interval, per source
    _write(root / "rl" / "manifest.json", {"task": "arithmetic", "pass@1_before": 0.3, "pass@1_after": 0.6,
                                           "pass@1_paired": {"diff": 0.3, "lo": 0.21, "hi": 0.39, "n": 64},
                                           "config": {"eval_prompts": 64, "eval_samples": 4, "difficulty": 0}})
    _write(root / "dpo" / "manifest.json", {
        "n_train": 300, "n_val": 100, "val_start": {"margin": 0.0},
        "val": {"margin": 0.5, "margin_se": 0.1, "accuracy": 0.8, "margin/generated_prefs": 0.9,
                "margin_se/generated_prefs": 0.1, "n/generated_prefs": 60, "margin/hh": -0.1,
                "margin_se/hh": 0.2, "n/hh": 40}, "train": {"margin": 1.2}})
    evaluation["models"]["sft"].update(arith_acc_no_tool=0.25, arith_acc_tool=0.0, arith_tool_calls=0)
    evaluation["models"]["rl"] = {"arith_acc_no_tool": 0.5, "arith_acc_tool": 0.0, "arith_tool_calls": 0}
    # per item (greedy, same 8 items): rl fixes 3 that sft got wrong and breaks 1
    evaluation["models"]["sft"]["arith_correct_no_tool"] = [1, 1, 0, 0, 0, 1, 0, 0]
    evaluation["models"]["rl"]["arith_correct_no_tool"] = [1, 0, 1, 1, 1, 1, 0, 0]
    evaluation["config"]["arithmetic_n"] = 64
    evaluation["config"]["arithmetic_difficulty"] = 0
    notes = Notes()
    lines = "\n".join(stage_findings(root, evaluation, notes))
    assert "the RL task (arithmetic, sums of 0–3) on 64 held-out prompts" in lines
    assert "pass@1 **0.30 → 0.60** (up, clearly¹)" in lines
    assert "on 64 fresh items of evaluate (sums of 0–3), answered greedily: sft 0.25 → rl 0.50²" in lines
    assert "margin **0.000 → 0.500** (up, clearly), 0.80 of the pairs with a positive margin; by source: " \
           "generated_prefs 0.900; hh -0.100⁴; trained on 300 pairs (margin on them 1.200)" in lines
    stats = "\n".join(notes.items)
    assert "Paired on the same 64 prompts: +0.300 (95% CI +0.210 to +0.390, paired bootstrap), up" in stats
    assert "sft 0.25 (95% CI 0.16–0.37, n=64) → rl 0.50" in stats
    assert "McNemar: rl right where sft wrong on 3 items, the reverse on 1, p=0.62" in stats
    assert "DPO margin 0.500 (95% CI 0.304–0.696, n=100)" in stats
    assert "generated_prefs 0.900 (95% CI 0.704–1.096, n=60); hh -0.100 (95% CI -0.492–0.292, n=40)" in stats
    assert Notes.markdown(notes)[0] == "### statistics behind the figures"
    # one caveat sentence per stage: every line ends with a sentence after its figures
    assert all(line.rstrip().endswith(".") for line in lines.splitlines())


def test_sft_line_names_the_tools_and_the_replies_that_broke_the_format(tmp_path):
    from tasks.report import Notes, stage_findings

    # the demo of 2026-12-07: python on, two malformed snippets whose refusal ate the 64-token budget
    failed = [{"prompt": f"What is {q}?", "ok": False, "finish_reason": "length", "tool_calls": 1, "tokens": 64,
               "forced_tokens": 39, "reply": '<|tool_start|>python: print("[:-33333)<|tool_end|>' + "x" * 120}
              for q in ("33-16", "98-58")]
    sft = {"chat_compliance": 0.8, "compliance": {"n": 10, "max_new_tokens": 64, "tools": ["calculator", "python"],
                                                  "finish_reasons": {"stop": 8, "length": 2}, "failed": failed}}
    lines = "\n".join(stage_findings(tmp_path, {"config": {"compliance_n": 10}, "models": {"sft": sft}}, Notes()))
    assert "end-of-turn token within 64 tokens, with the tools it was trained to call on (calculator, python; " \
           "their output counts in the 64) — the chat format" in lines
    assert "**0.80** of the replies keep the format; 2 failed: 2 ran to the token limit, 2 after a tool call, " \
           "e.g. \"What is 33\\-16?\" → \"&lt;\\|tool\\_start\\|&gt;python: print" in lines
    assert "x" * 50 + "…\"" in lines  # a long reply is cut
    # an older eval.json without the details still gets its line
    lines = "\n".join(stage_findings(tmp_path, {"models": {"sft": {"chat_compliance": 1.0}}}, Notes()))
    assert "**1.00** of the replies keep the format. *Means:*" in lines


def test_rl_line_quotes_entropy_and_reward_and_the_curves_plot_entropy():
    from tasks.report import _rl_diagnostics, curve_panels

    rl = {"config": {"loss_type": "dr_grpo"}, "diagnostics": {
        "steps": 90, "window": 9, "entropy_start": 1.2, "entropy_end": 0.05, "reward_mean_start": 0.3,
        "reward_mean_end": 0.6, "clip_frac_end": 0.012}}
    line = _rl_diagnostics(rl)
    assert "loss_type dr_grpo: policy entropy 1.20 → 0.05 nats/token, mean reward 0.30 → 0.60" in line
    assert "the entropy collapsed" in line and _rl_diagnostics({}) == ""
    panels = curve_panels({"rl": {"rl/reward_mean": [(1, 0.1), (2, 0.2)], "rl/entropy": [(1, 1.0), (2, 0.9)]}})
    assert [t for t, _, _ in panels] == ["rl: reward", "rl: policy entropy (nats/token)"]
