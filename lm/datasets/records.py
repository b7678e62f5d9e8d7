"""Conversation records on disk: JSON / JSONL reading with every skipped record counted, and the
Alpaca and ShareGPT (glaive tool-calling) formats as conversations in lm/chat.py's format.

SFT (lm/posttrain/sft_data.py), the preference data (lm/datasets/preferences.py) and the
probe's refusal file read their files here; a malformed line, an unknown role or an empty
turn is counted per source and reason in `SkipStats`, never fatal.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lm.chat import ChatError

log = logging.getLogger(__name__)


@dataclass
class SkipStats:
    """Counts of kept and skipped records per source, with reasons."""

    kept: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # key: "source/reason"

    def skip(self, source: str, reason: str, detail: str = "") -> None:
        self.skipped[f"{source}/{reason}"] += 1
        log.debug("skip %s record (%s) %s", source, reason, detail)

    def keep(self, source: str) -> None:
        self.kept[source] += 1

    def as_dict(self) -> dict:
        return {"kept": dict(self.kept), "skipped": dict(self.skipped),
                "n_kept": sum(self.kept.values()), "n_skipped": sum(self.skipped.values())}


# ------------------------------------------------------------------ reading
def read_records(path: str | Path, source: str, stats: SkipStats) -> list[dict]:
    """Records of a JSON array or JSONL file; malformed lines are counted, not fatal."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SFT/preference data {path} not found (set the path in the preset or CLI)")
    if path.suffix == ".gz":
        import gzip
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix the file or convert it to JSONL") from e
        out = []
        for r in data:
            if isinstance(r, dict):
                out.append(r)
            else:
                stats.skip(source, "not_an_object")
        return out
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            stats.skip(source, "malformed_json")
            continue
        if isinstance(r, dict):
            out.append(r)
        else:
            stats.skip(source, "not_an_object")
    return out


def alpaca_to_conversation(rec: dict) -> list[dict]:
    """One Alpaca record → conversation (history turns, then instruction + input)."""
    instr, inp, out = rec.get("instruction"), rec.get("input") or "", rec.get("output")
    if not isinstance(instr, str) or not isinstance(out, str) or not isinstance(inp, str):
        raise ChatError("missing_field", "alpaca record needs string instruction and output")
    conv: list[dict] = []
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        conv.append({"role": "system", "content": rec["system"]})
    for pair in rec.get("history") or []:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ChatError("bad_history", "history entries are [user, assistant] pairs")
        conv += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    user = instr if not inp.strip() else f"{instr}\n\n{inp}"
    conv += [{"role": "user", "content": user}, {"role": "assistant", "content": out}]
    return conv


GLAIVE_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "function_call": "tool_call", "observation": "tool", "system": "system"}


def glaive_to_conversation(rec: dict) -> list[dict]:
    """ShareGPT/glaive tool-calling record → conversation with tool calls and outputs."""
    turns = rec.get("conversations")
    if not isinstance(turns, list):
        raise ChatError("missing_field", "record has no 'conversations' list")
    conv: list[dict] = []
    tools = rec.get("tools")
    if isinstance(tools, str) and tools.strip() and tools.strip() != "[]":
        conv.append({"role": "system", "content": f"You can call these functions (JSON schema):\n{tools}"})
    for t in turns:
        if not isinstance(t, dict):
            raise ChatError("bad_message", "turn is not an object")
        role = GLAIVE_ROLES.get(t.get("from"))
        if role is None:
            raise ChatError("unknown_role", f"role {t.get('from')!r}")
        value = t.get("value")
        if not isinstance(value, str) or not value.strip():
            raise ChatError("empty_turn", f"{t.get('from')} turn is empty")
        if role == "tool_call":
            conv.append({"role": "assistant", "content": [{"type": "tool_call", "text": value}]})
        else:
            conv.append({"role": role, "content": value})
    return conv
