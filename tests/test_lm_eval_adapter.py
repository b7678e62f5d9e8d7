"""lm-eval harness adapter end to end: a local harness task built from the shipped
ARC-Easy data (no hub access), scored on the toy model (tests/support/toy.py), agrees with
our own scorer on the same items."""
import json

import pytest
import torch

pytest.importorskip("lm_eval")

from lm.datasets import benchmarks as bd  # noqa: E402
from lm.evals import core as core_eval  # noqa: E402
from lm.checkpoint import load_model  # noqa: E402
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint  # noqa: E402

TASK_YAML = """task: c2c_arc_easy_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
"""


def test_lm_eval_scores_our_checkpoint_like_our_scorer(tmp_path_factory, tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import crawl2chat.lm_eval_adapter  # noqa: F401  (registers "crawl2chat")

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    torch.set_num_threads(1)
    ckpt = make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)
    qs = bd.arc_questions("ARC-Easy", limit=24)
    data = tmp_path / "arc_easy.jsonl"
    data.write_text("".join(json.dumps({"question": q["question"], "choices": q["choices"], "gold": q["gold"]}) + "\n"
                            for q in qs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "c2c_arc_easy_local.yaml").write_text(TASK_YAML.format(data=data))
    res = lm_eval.simple_evaluate(model="crawl2chat", model_args=f"path={ckpt}", tasks=["c2c_arc_easy_local"],
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
                                  log_samples=False, bootstrap_iters=0)
    harness_acc = res["results"]["c2c_arc_easy_local"]["acc,none"]

    model, tok, _ = load_model(ckpt)
    items = [bd.Item("arc_easy", q["id"], f"Question: {q['question']}\nAnswer:",
                     tuple(" " + c for c in q["choices"]), q["gold"], 1 / len(q["choices"])) for q in qs]
    graded = bd.grade_items(items, core_eval.model_scorer(model)(core_eval.encode_items(items, tok)))
    ours = sum(g["correct"] for g in graded) / len(graded)
    assert harness_acc == pytest.approx(ours) and len(graded) == 24
