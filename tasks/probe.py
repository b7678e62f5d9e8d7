"""The `probe` stage: find what a model knows, and write it down as SFT data.

    OUT/results.jsonl              per probed question: its k replies, their verdicts, how many were right
    OUT/refusal_sft.GENERATED.jsonl  SFT records {id, kind: answer|refusal, n_right, k, messages}
    OUT/manifest.json              counts + paths, written last (by the flow)

Questions: the probe part of TriviaQA (lm/triviaqa.py; the held-out part is
never touched here). Each is asked `samples` times at `temperature`, in the
prompt style the model understands; lm/triviaqa.grade grades every reply;
lm/refusal_data.py turns the counts into conversations. `sft` mixes them in
(`sft.refusal_data` + `sft.refusal_ratio`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from core.atomic import write_text
from tasks.prefect_task import prefect_task

log = logging.getLogger(__name__)

CONVERSATIONS = "refusal_sft.GENERATED.jsonl"
RESULTS = "results.jsonl"
MANIFEST = "manifest.json"


def run_probe(model: str, out: str | Path, cfg) -> dict[str, Any]:
    """Probe `model` (checkpoint dir or MLflow URI); write results + conversations; return the manifest.

    The manifest itself is the flow's last write (after the MLflow run), as for every stage.
    """
    from lm import triviaqa
    from lm.engine import load_engine
    from lm.refusal_data import probe_conversations

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a probe that starts is not complete until it writes this again
    t0 = time.perf_counter()
    engine, meta = load_engine(model, device=cfg.device)
    style = triviaqa.style_for(meta, cfg.prompt)
    shots = triviaqa.split()[0][:cfg.shots] if style == "fewshot" else []
    questions = triviaqa.probe_questions(cfg.n_questions)
    log.info("probe: %d questions × %d samples, %s prompts, model %s", len(questions), cfg.samples, style, model)

    def progress(done: int, total: int) -> None:
        log.info("probe: %d/%d questions (%.0fs)", done, total, time.perf_counter() - t0)

    replies = triviaqa.ask(engine, questions, style, samples=cfg.samples, temperature=cfg.temperature,
                           top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                           seed=cfg.seed, shots=shots, progress=progress)
    results = []
    for q, rs in zip(questions, replies):
        verdicts = [triviaqa.grade(r, q["aliases"]) for r in rs]
        results.append({"id": q["id"], "question": q["question"], "answer": q["answer"], "k": len(rs),
                        "n_right": verdicts.count("right"), "replies": rs, "verdicts": verdicts})
    records = probe_conversations(results, cfg.min_correct)
    write_text(out / RESULTS, "".join(json.dumps(r) + "\n" for r in results))
    write_text(out / CONVERSATIONS, "".join(json.dumps(r) + "\n" for r in records))
    all_verdicts = [v for r in results for v in r["verdicts"]]
    n_answers = sum(r["kind"] == "answer" for r in records)
    n_refusals = sum(r["kind"] == "refusal" for r in records)
    manifest = {"stage": "probe", "model": str(model), "model_kind": meta.get("kind"), "style": style,
                "n_questions": len(results), "k": cfg.samples,
                "n_answers": n_answers, "n_refusals": n_refusals, "n_left_out": len(results) - len(records),
                "known_fraction": n_answers / max(1, len(results)),
                "sample_rates": triviaqa.rates(all_verdicts),
                "conversations": str((out / CONVERSATIONS).resolve()), "results": str((out / RESULTS).resolve()),
                "seconds": round(time.perf_counter() - t0, 2), "config": cfg.model_dump()}
    log.info("probe: %d answered right at least once (answers kept), %d never (refusals), %d left out",
             n_answers, n_refusals, manifest["n_left_out"])
    return manifest


def conversations_path(path: str | Path) -> Path:
    """The conversations file a probe output names: `path` itself, or the one in a probe directory's manifest."""
    p = Path(path)
    if p.is_dir():
        m = p / MANIFEST
        if not m.exists():
            raise FileNotFoundError(f"{p} has no {MANIFEST}: the probe stage did not finish there; re-run "
                                    "`crawl2chat probe`")
        p = Path(json.loads(m.read_text())["conversations"])
    if not p.exists():
        raise FileNotFoundError(f"refusal data {p} not found (set sft.refusal_data to a probe output)")
    return p


probe_task = prefect_task(run_probe, name="probe-model", no_cache=True)
