"""EleutherAI's harness with its own `hf` backend on an exported model: a local task built from the shipped
benchmark data (the items `crawl2chat eval --suite core` scores; nothing downloaded) scores what our scorer
scores on the same items."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from lm.datasets import benchmarks as bd  # noqa: E402
from lm.evals import core as core_eval  # noqa: E402
from lm.checkpoint import load_model  # noqa: E402
from lm.hf import export_hf  # noqa: E402
from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint  # noqa: E402

TASKS = {"openbookqa": "acc_norm", "arc_easy": "acc"}  # short answers (lm-eval refuses one over max_length)
TASK_YAML = """task: c2c_{name}_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def test_lm_eval_hf_backend_scores_the_export_like_our_core_suite(tmp_path_factory, tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    torch.set_num_threads(1)
    ckpt = make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)  # shared with other tests
    model, tok, meta = load_model(ckpt)
    out = export_hf(model, tok, tmp_path / "toy-hf", meta)["out"]
    ours = core_eval.run_core(model, tok, tasks=list(TASKS), limit=16)  # what `eval --suite core` runs
    (tmp_path / "tasks").mkdir()
    for name in TASKS:
        items = bd.load_task(name, 16)
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"context": it.context, "choices": list(it.continuations),
                                            "gold": it.gold}) + "\n" for it in items))
        (tmp_path / "tasks" / f"c2c_{name}_local.yaml").write_text(TASK_YAML.format(name=name, data=data))
    # add_bos_token: score after BOS, as our scorer does; max_length: lm-eval keeps max_length + 1 tokens of
    # context + continuation, ours sequence_len, so both truncate long items alike
    args = f"pretrained={out},trust_remote_code=True,add_bos_token=True,max_length={model.config.sequence_len - 1}"
    res = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=[f"c2c_{n}_local" for n in TASKS],
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks")), device="cpu",
                                  batch_size=8, log_samples=True, bootstrap_iters=0)
    for name, metric in TASKS.items():
        theirs = res["results"][f"c2c_{name}_local"]
        # and item by item, the log-likelihood of every choice
        items = bd.load_task(name, 16)
        scores = core_eval.model_scorer(model)(core_eval.encode_items(items, tok))
        by_doc = {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in res["samples"][f"c2c_{name}_local"]}
        k = 0
        for i, it in enumerate(items):
            n = len(it.continuations)
            assert by_doc[i] == pytest.approx([x.logprob for x in scores[k:k + n]], abs=1e-3)
            k += n
        assert ours["tasks"][name]["n"] == 16 and ours["tasks"][name]["metric"] == metric
        assert theirs["acc,none"] == pytest.approx(ours["tasks"][name]["acc"])
        assert theirs["acc_norm,none"] == pytest.approx(ours["tasks"][name]["acc_norm"])
