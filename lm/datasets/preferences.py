"""GENERATED preference pairs whose preference a tiny model can learn from the text.

Real human preferences (HH-RLHF: which of two replies is less harmful) need
more capacity than the demo's ~1.4M-parameter model has, so its reward model
and DPO sit at chance on them. These pairs carry a signal that is in the text:
the chosen reply is polite and about the user's topic; the rejected one is rude,
dismissive, or polite but about another topic (so the model must relate the
reply to the prompt, not only spot rude words).

Every pair carries its topic as `group`: `split_preferences` holds out whole
topics, so held-out accuracy and margins are measured on topics the model
never trained on.

Real preference files (the reward model, DPO and RLHF read them here):
HH-RLHF (`chosen`/`rejected` dialogue strings "\\n\\nHuman: … \\n\\nAssistant: …"),
LLaMA-Factory DPO JSON (`conversations` + `chosen`/`rejected` turns), and JSONL
rankings (`{"prompt"|"conversation", "responses": [best, …, worst]}`).
Unparseable or too long records are skipped and counted; long dialogues first
lose their oldest turns (`render_preference`).
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from lm.chat import ChatError, ChatRenderer
from lm.datasets.records import GLAIVE_ROLES, SkipStats, read_records
from lm.tokenizer import Tokenizer


@dataclass
class Preference:
    """A prompt conversation and its responses ranked best first (a pair is K=2)."""

    prompt: list[dict]
    responses: list[str]
    source: str = ""
    group: str = ""  # e.g. a GENERATED pair's topic: the held-out split keeps a group on one side

    @property
    def chosen(self) -> str:
        return self.responses[0]

    @property
    def rejected(self) -> str:
        return self.responses[-1]


SOURCE = "generated_prefs"

TOPICS = [
    "the weather", "a recipe for soup", "my homework", "a good book", "the train times", "python lists",
    "sleeping better", "a birthday gift", "learning to swim", "saving money", "a poem about cats",
    "fixing my bike", "a movie tonight", "planting tomatoes", "writing a letter", "the solar system",
    "baking bread", "my job interview", "learning French", "a trip to Rome", "cleaning the kitchen",
    "running a marathon", "choosing a laptop", "the history of Egypt", "painting a room", "training a puppy",
    "making coffee", "a science project", "growing roses", "playing chess", "a wedding speech",
    "the stock market", "camping in winter", "reading music", "a healthy breakfast", "repairing a roof",
    "learning to draw", "the rules of football", "a resume", "keeping fish", "making friends",
    "the moon landing", "packing for a trip", "meditation", "a budget for the month", "knitting a scarf",
    "writing a story", "the ocean tides",
]
ASKS = [
    "Can you help me with {t}?", "Tell me about {t}.", "I need advice on {t}.", "What do you know about {t}?",
    "Any tips for {t}?", "Please explain {t} to me.",
]
HELPFUL = [
    "Sure, I am happy to help with {t}. Here is a clear answer.", "Of course! Let us look at {t} together.",
    "Happy to help: here are a few useful tips about {t}.", "Good question about {t}. Here is what I know.",
    "Yes, {t} is a nice topic. Let me explain it step by step.",
]
RUDE = [
    "No. Go away, I hate {t}.", "Stupid question about {t}. Shut up.", "Ugh, {t} is dumb and so are you.",
    "Why would anyone care about {t}? Leave me alone.",
]
DISMISSIVE = ["I don't want to talk about that.", "Not my problem.", "Figure it out yourself.", "Whatever."]


def generate_preferences(n: int, seed: int = 0) -> list[Preference]:
    """n GENERATED pairs (prompt, polite on-topic reply > rude, dismissive or off-topic one); deterministic in seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        kind = rng.random()
        if kind < 0.4:
            bad = rng.choice(RUDE).format(t=t)
        elif kind < 0.6:
            bad = rng.choice(DISMISSIVE)
        else:  # polite, but answers another topic: needs the prompt to judge
            other = rng.choice([x for x in TOPICS if x != t])
            bad = rng.choice(HELPFUL).format(t=other)
        prompt = [{"role": "user", "content": rng.choice(ASKS).format(t=t)}]
        out.append(Preference(prompt, [rng.choice(HELPFUL).format(t=t), bad], source=SOURCE, group=t))
    return out


# ------------------------------------------------------------------- parsing
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_hh_dialogue(text: str) -> list[dict]:
    """'\\n\\nHuman: …\\n\\nAssistant: …' → messages (raises ChatError when it does not parse)."""
    pieces = _HH_TURN.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        raise ChatError("unparseable", "dialogue does not start with '\\n\\nHuman:'")
    msgs = []
    for role, content in zip(pieces[1::2], pieces[2::2]):
        msgs.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return msgs


def hh_to_preference(rec: dict) -> Preference:
    c, r = rec.get("chosen"), rec.get("rejected")
    if not isinstance(c, str) or not isinstance(r, str):
        raise ChatError("missing_field", "record needs chosen and rejected strings")
    mc, mr = parse_hh_dialogue(c), parse_hh_dialogue(r)
    if mc[-1]["role"] != "assistant" or mr[-1]["role"] != "assistant" or mc[:-1] != mr[:-1]:
        raise ChatError("mismatched_prompts", "chosen and rejected must share the dialogue up to the last reply")
    for m in mc[:-1]:
        if not m["content"]:
            raise ChatError("empty_turn", "empty turn in the dialogue")
    if not mc[-1]["content"] or not mr[-1]["content"]:
        raise ChatError("empty_turn", "empty chosen or rejected reply")
    if mc[-1]["content"] == mr[-1]["content"]:
        raise ChatError("identical_pair", "chosen equals rejected")
    return Preference(mc[:-1], [mc[-1]["content"], mr[-1]["content"]])


def sharegpt_to_preference(rec: dict) -> Preference:
    turns = rec.get("conversations")
    if not isinstance(turns, list):
        raise ChatError("missing_field", "record has no conversations list")
    prompt = []
    for t in turns:
        role = GLAIVE_ROLES.get(t.get("from")) if isinstance(t, dict) else None
        if role not in ("user", "assistant", "system"):
            raise ChatError("unknown_role", f"role {t.get('from') if isinstance(t, dict) else t!r}")
        if not isinstance(t.get("value"), str) or not t["value"].strip():
            raise ChatError("empty_turn", "empty turn")
        prompt.append({"role": role, "content": t["value"]})
    out = []
    for key in ("chosen", "rejected"):
        v = rec.get(key)
        v = v.get("value") if isinstance(v, dict) else v
        if not isinstance(v, str) or not v.strip():
            raise ChatError("empty_turn", f"empty {key} reply")
        out.append(v)
    return Preference(prompt, out)


def ranking_to_preference(rec: dict) -> Preference:
    prompt = rec.get("conversation") or ([{"role": "user", "content": rec["prompt"]}]
                                         if isinstance(rec.get("prompt"), str) else None)
    resp = rec.get("responses")
    if not prompt or not isinstance(resp, list) or len(resp) < 2:
        raise ChatError("missing_field", "ranking needs prompt/conversation and ≥ 2 responses")
    if not all(isinstance(r, str) and r.strip() for r in resp):
        raise ChatError("empty_turn", "empty response in ranking")
    return Preference(prompt, list(resp))


def load_preferences(paths: list[str], stats: SkipStats, max_records: int | None = None) -> list[Preference]:
    """Preferences from HH-RLHF / ShareGPT-DPO / ranking files (format detected per record)."""
    out = []
    for path in paths:
        name = Path(path).name.split(".")[0]
        for rec in read_records(path, name, stats)[:max_records]:
            try:
                if "responses" in rec:
                    p = ranking_to_preference(rec)
                elif "conversations" in rec:
                    p = sharegpt_to_preference(rec)
                else:
                    p = hh_to_preference(rec)
            except ChatError as e:
                stats.skip(name, e.reason, str(e))
                continue
            p.source = name
            out.append(p)
    return out


def split_preferences(prefs: list[Preference], val_fraction: float, salt: str = "") -> tuple[list, list]:
    """The held-out split of preference data: a stable hash split (a different salt gives an independent split).

    Pairs with a `group` are split by group (all of a topic's pairs on one
    side), the others by prompt and best response; exact duplicates therefore
    never straddle the split.
    """
    train, val = [], []
    for p in prefs:
        key = salt + "|" + (f"group:{p.source}:{p.group}" if p.group else
                            repr(p.prompt)[-300:] + "|" + p.responses[0][:200])
        h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        (val if h < val_fraction * 0xFFFFFFFF else train).append(p)
    return train, val


# ---------------------------------------------------------------- rendering
@dataclass
class RenderedPref:
    seqs: list[list[int]]   # one full conversation per response (best first)
    prompt_len: list[int]   # tokens before each response's first token
    source: str = ""        # the Preference's source (per-source held-out figures)


def render_preference(r: ChatRenderer, p: Preference, max_len: int) -> RenderedPref:
    """Render prompt + each response; drops the oldest prompt turns while too long."""
    prompt = list(p.prompt)
    while True:
        try:
            pids = r.render_for_completion(prompt)
            seqs = []
            for resp in p.responses:
                full = r.render(prompt + [{"role": "assistant", "content": resp}]).ids
                seqs.append(full)
            if max(len(s) for s in seqs) <= max_len:
                return RenderedPref(seqs, [len(pids)] * len(seqs), p.source)
        except ChatError:
            raise
        # Too long: drop the oldest exchange, keep at least the last user turn.
        idx = next((i for i, m in enumerate(prompt) if m["role"] == "user"), None)
        later_user = [i for i, m in enumerate(prompt) if m["role"] == "user" and i != idx]
        if idx is None or not later_user:
            raise ChatError("too_long", f"{max(len(s) for s in seqs)} tokens > {max_len} even with one turn")
        prompt = prompt[later_user[0]:]


def render_preferences(prefs: list[Preference], tokenizer: Tokenizer, max_len: int,
                       stats: SkipStats) -> list[RenderedPref]:
    r = ChatRenderer(tokenizer)
    out = []
    for p in prefs:
        try:
            out.append(render_preference(r, p, max_len))
            stats.keep(p.source or "prefs")
        except ChatError as e:
            stats.skip(p.source or "prefs", e.reason, str(e))
    return out
