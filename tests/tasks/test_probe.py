"""The probe stage end to end on a tiny GENERATED model: a real Prefect flow run, a real MLflow store,
real TriviaQA questions; then SFT takes its conversations, and the pipeline wires one to the other."""
from __future__ import annotations

import json
from pathlib import Path

from lm.datasets import triviaqa
from lm.datasets.refusal import SOURCE
from tests.support.posttrain_base import tiny_base

SMALL = {"n_questions": 6, "samples": 3, "max_new_tokens": 6, "batch_size": 6, "shots": 1, "device": "cpu"}


def test_probe_flow_writes_conversations_then_its_manifest(tmp_path, prefect_api, mlflow_uri):
    from mlflow import MlflowClient

    from flows.probe import probe

    out = tmp_path / "probe"
    m = probe(str(tiny_base()), str(out), preset=None, overrides=SMALL, mlflow_root=str(tmp_path))
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["style"] == "fewshot" and m["n_questions"] == 6 and m["k"] == 3  # a base model gets few-shot text
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    probe_ids = {q["id"] for q in triviaqa.probe_questions(6)}
    assert {r["id"] for r in results} == probe_ids  # never a held-out question
    for r in results:
        assert len(r["replies"]) == 3 and r["n_right"] == r["verdicts"].count("right")
    recs = [json.loads(line) for line in Path(m["conversations"]).read_text().splitlines()]
    assert Path(m["conversations"]).name.endswith(".GENERATED.jsonl")
    assert len(recs) == m["n_answers"] + m["n_refusals"] and m["n_left_out"] == 6 - len(recs)
    by_id = {r["id"]: r for r in results}
    for rec in recs:  # never right → refusal; right at least once → the answer
        assert rec["kind"] == ("answer" if by_id[rec["id"]]["n_right"] else "refusal")
    assert abs(sum(m["sample_rates"].values()) - 1.0) < 1e-9
    run = MlflowClient().get_run(m["mlflow_run_id"])
    assert run.data.tags["stage"] == "probe" and run.data.tags["probed_model"] == str(tiny_base())
    assert run.data.metrics["final/n_refusals"] == m["n_refusals"] and "final/sample_wrong_rate" in run.data.metrics


def test_sft_mixes_in_the_probe_output_and_the_pipeline_passes_it(tmp_path):
    import conf
    from conf.posttrain import SFTConfig
    from flows import pipeline
    from tasks.posttrain import run_sft

    out = tmp_path / "probe"
    out.mkdir()
    qs = triviaqa.probe_questions(3)
    recs = [{"id": q["id"], "kind": "refusal", "n_right": 0, "k": 2,
             "messages": [{"role": "user", "content": q["question"]}, {"role": "assistant", "content": "I don't know."}]}
            for q in qs]
    conv = out / "refusal_sft.GENERATED.jsonl"
    conv.write_text("".join(json.dumps(r) + "\n" for r in recs))
    (out / "manifest.json").write_text(json.dumps({"stage": "probe", "conversations": str(conv)}))

    cfg = conf.load(SFTConfig, None, {"steps": 1, "batch_size": 2, "eval_every": 1, "eval_batches": 1,
                                      "checkpoint_every": 1000, "alpaca_path": "", "glaive_path": "",
                                      "n_identity": 12, "n_arithmetic": 12, "device": "cpu",
                                      "refusal_data": str(out), "refusal_ratio": 0.2})
    m = run_sft(str(tiny_base()), str(tmp_path / "sft"), cfg)
    mixed: dict[str, int] = dict(m["data"]["kept"])  # per source: rendered + skipped (too long for 96 tokens)
    for key, n in m["data"]["skipped"].items():
        mixed[key.split("/")[0]] = mixed.get(key.split("/")[0], 0) + n
    others = sum(mixed.values()) - mixed[SOURCE]
    assert mixed[SOURCE] == round(0.2 / 0.8 * others) and mixed[SOURCE] > 3  # the 3 repeated to a fifth of all

    # the pipeline hands the probe directory to sft once the probe stage is complete
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "manifest.json").write_text(json.dumps({"checkpoint": str(tiny_base())}))
    args = pipeline.stage("sft").args(tmp_path, "tiny", {})
    assert args["overrides"]["refusal_data"] == str(out)
    assert pipeline.stage("probe").args(tmp_path, "tiny", {})["out"] == str(tmp_path / "probe")
    (out / "manifest.json").unlink()
    assert "refusal_data" not in pipeline.stage("sft").args(tmp_path, "tiny", {})["overrides"]


def test_report_card_line_shows_before_and_after(tmp_path):
    from tasks.report import honesty_findings

    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "manifest.json").write_text(json.dumps({"n_questions": 24, "k": 4, "n_answers": 1,
                                                                  "n_refusals": 23}))
    models = {"pretrain": {"honesty_right": 0.05, "honesty_wrong": 0.9, "honesty_abstain": 0.05, "honesty_n": 100},
              "sft": {"honesty_right": 0.04, "honesty_wrong": 0.1, "honesty_abstain": 0.86, "honesty_n": 100}}
    line = "\n".join(honesty_findings(tmp_path, models))
    # what was measured first, then the figures (issue 25's card wording), statistics in a footnote
    assert "the probe asked 24 other questions × 4 samples: 1 answered right at least once" in line
    assert "pretrain 0.05 / 0.90 / 0.05; sft 0.04 / 0.10 / 0.86" in line
    assert "wrong answers **0.90 → 0.10**" in line and "not a significant change" not in line
    assert honesty_findings(tmp_path / "nothing", {}) == []
