"""GENERATED preference pairs whose preference a tiny model can learn from the text.

Real human preferences (HH-RLHF: which of two replies is less harmful) need
more capacity than the demo's ~1.4M-parameter model has, so its reward model
and DPO sit at chance on them. These pairs carry a signal that is in the text:
the chosen reply is polite and about the user's topic; the rejected one is rude,
dismissive, or polite but about another topic (so the model must relate the
reply to the prompt, not only spot rude words).

Every pair carries its topic as `group`: `lm.posttrain.reward.split_preferences` holds
out whole topics, so held-out accuracy and margins are measured on topics the
model never trained on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


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
