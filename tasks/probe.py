"""The `probe` stage: find what a model knows, and write it down as SFT data.

    OUT/results.jsonl              per probed question: its k replies, their verdicts, how many were right
    OUT/refusal_sft.GENERATED.jsonl  SFT records {id, kind: answer|refusal, n_right, k, messages}
    OUT/manifest.json              counts + paths, written last (by the flow)

Questions: the probe part of TriviaQA (lm/datasets/triviaqa.py; the held-out part is
never touched here). Each is asked `samples` times at `temperature`, in the
prompt style the model understands; lm/datasets/triviaqa.grade grades every reply;
lm/datasets/refusal.py turns the counts into conversations. `sft` mixes them in
(`sft.refusal_data` + `sft.refusal_ratio`).
"""
from __future__ import annotations

import hashlib
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
PARTIAL = "replies.partial.json"  # replies of the batches done so far: a killed probe resumes from them


def run_probe(model: str, out: str | Path, cfg) -> dict[str, Any]:
    """Probe `model` (checkpoint dir or MLflow URI); write results + conversations; return the manifest.

    The manifest itself is the flow's last write (after the MLflow run), as for every stage.
    """
    from lm.datasets import triviaqa
    from lm.engine import load_engine
    from lm.datasets.refusal import probe_conversations

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a probe that starts is not complete until it writes this again
    for tmp in out.glob("*.tmp-*"):  # half-written by a killed probe (core.atomic temp names): never read
        tmp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    engine, meta = load_engine(model, device=cfg.device)
    style = triviaqa.style_for(meta, cfg.prompt)
    shots = triviaqa.split()[0][:cfg.shots] if style == "fewshot" else []
    questions = triviaqa.probe_questions(cfg.n_questions)
    log.info("probe: %d questions × %d samples, %s prompts, model %s", len(questions), cfg.samples, style, model)

    def progress(done: int, total: int) -> None:
        log.info("probe: %d/%d questions (%.0fs)", done, total, time.perf_counter() - t0)

    replies = _ask_resumable(engine, questions, style, shots, cfg, out / PARTIAL,
                             _probe_key(model, meta, style, cfg), progress)
    results = []
    for q, rs in zip(questions, replies):
        verdicts = [triviaqa.grade(r, q["aliases"]) for r in rs]
        results.append({"id": q["id"], "question": q["question"], "answer": q["answer"], "k": len(rs),
                        "n_right": verdicts.count("right"), "replies": rs, "verdicts": verdicts})
    records = probe_conversations(results, cfg.min_correct)
    write_text(out / RESULTS, "".join(json.dumps(r) + "\n" for r in results))
    write_text(out / CONVERSATIONS, "".join(json.dumps(r) + "\n" for r in records))
    (out / PARTIAL).unlink(missing_ok=True)  # the finished files hold it all now
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


def _probe_key(model, meta: dict, style: str, cfg) -> str:
    """What the replies depend on: the model (its files' checksums), the prompt style and the config."""
    ident = {"model": str(model), "checksums": meta.get("checksums"), "style": style, "config": cfg.model_dump()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def _ask_resumable(engine, questions: list[dict], style: str, shots, cfg, partial: Path, key: str,
                   progress) -> list[list[str]]:
    """triviaqa.ask batch by batch, keeping the replies so far in `partial` (atomic rewrite per batch).

    Batch b is sampled with seed `cfg.seed + b` whatever ran before it, so a probe killed
    mid-way and re-run asks only the batches it lacks and ends with the same replies.
    """
    from lm.datasets import triviaqa

    replies: list[list[str]] = []
    if partial.exists():
        try:
            kept = json.loads(partial.read_text())
            if kept.get("key") == key:
                replies = kept["replies"]
                log.info("probe: resuming after %d/%d questions from %s", len(replies), len(questions), partial)
        except (ValueError, KeyError, TypeError):
            log.warning("probe: ignoring unreadable %s", partial)
    bs = cfg.batch_size
    replies = replies[:len(replies) - len(replies) % bs] if len(replies) < len(questions) else replies
    for start in range(len(replies), len(questions), bs):
        replies += triviaqa.ask(engine, questions[start:start + bs], style, samples=cfg.samples,
                                temperature=cfg.temperature, top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens,
                                batch_size=bs, seed=cfg.seed + start // bs, shots=shots)
        write_text(partial, json.dumps({"key": key, "replies": replies}))
        progress(len(replies), len(questions))
    return replies[:len(questions)]


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
