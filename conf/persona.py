"""The assistant's persona (name, maker, tools): one config, read by `sft` (system message + identity
data), `serve` and `chat` (the system message), so the model hears the same words at train and chat time.

conf/ is a leaf (it imports no project code): `lm.chat.Persona` renders these fields, and
`ToolName` lists the tools of `lm.tools` (tests/test_conf.py keeps the two lists equal).
Declared as settings (conf/settings.py) because SFT, which nests it, runs on a GPU box too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from conf.settings import Settings, model_getter, setting

ToolName = Literal["calculator", "search", "python"]


@dataclass
class PersonaSettings(Settings):
    """Nested in SFT's config as `persona:`; `lm.chat.Persona(**persona.model_dump())` renders it."""

    name: str = setting("crawl2chat", min_length=1, max_length=64)
    maker: str = setting("the crawl2chat project", min_length=1, max_length=128)
    tools: list[ToolName] = setting(["calculator"])


# PersonaConfig: the pydantic model of PersonaSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"PersonaConfig": "PersonaSettings"})
