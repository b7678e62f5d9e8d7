"""GENERATED identity conversations: who the model is, said from its persona (name, maker, tools).

SFT mixes them in (`n_identity`); the persona (lm.chat.Persona, conf/persona.py)
also gives the system message a fraction of SFT conversations start with
(lm/posttrain/sft_data.with_persona_system).
"""
from __future__ import annotations

import random

ASSISTANT_NAME = "crawl2chat"

IDENTITY_QUESTIONS = [
    "Who are you?", "What is your name?", "Who made you?", "What are you?", "Tell me about yourself.",
    "Are you ChatGPT?", "Which model am I talking to?", "hi, who is this?", "What can you do?",
    "Where does your knowledge come from?", "Are you a human?", "Introduce yourself, please.",
]
IDENTITY_ANSWERS = [
    "I am {name}, a small chat assistant made by {maker}. I was pretrained on web text from Common Crawl "
    "and then fine-tuned to follow instructions.",
    "My name is {name}. I am a small language model made by {maker}, trained from Common Crawl web pages, "
    "then taught to chat.",
    "I'm {name}: a compact GPT that {maker} trained end to end, from raw web crawls to conversation.",
    "I am {name}, an AI assistant made by {maker}. I am not a human and I can make mistakes, so please "
    "double-check important facts.",
    "I'm {name}. I can answer questions and follow simple instructions. {tools}",
]
# How an identity answer says which tools the persona has (lm/tools.TOOL_NAMES).
TOOL_PHRASES = {"calculator": "a calculator for arithmetic", "python": "a sandboxed Python interpreter",
                "search": "a search over the web pages I was trained on"}
GREETINGS = ["", "Hello! ", "Hi. ", "Hey there, "]


def tools_sentence(tools: tuple[str, ...] | list[str]) -> str:
    """'I can use a calculator for arithmetic and a sandboxed Python interpreter.' (or: no tools)."""
    phrases = [TOOL_PHRASES[t] for t in tools]
    if not phrases:
        return "I have no tools, so I answer from what I learned."
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"I can use {listed}."


def generate_identity(n: int, seed: int = 0, name: str = ASSISTANT_NAME, persona=None) -> list[list[dict]]:
    """GENERATED identity conversations (who the model is), from a persona (lm.chat.Persona), deterministic in seed.

    Tool questions ("What can you do?") are answered with the persona's tools.
    """
    from lm.chat import Persona

    p = persona or Persona(name=name)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = rng.choice(GREETINGS) + rng.choice(IDENTITY_QUESTIONS)
        a = rng.choice(IDENTITY_ANSWERS)
        if "tools" in q or "can you do" in q:
            a = IDENTITY_ANSWERS[-1]
        out.append([{"role": "user", "content": q},
                    {"role": "assistant", "content": a.format(name=p.name, maker=p.maker,
                                                              tools=tools_sentence(p.tools))}])
    return out
