"""The assistant's persona (name, maker, tools): one config, read by `sft` (system message + identity
data), `serve` and `chat` (the system message), so the model hears the same words at train and chat time.

conf/ is a leaf (it imports no project code): `lm.chat.Persona` renders these fields, and
`ToolName` lists the tools of `lm.tools` (tests/test_conf.py keeps the two lists equal).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ToolName = Literal["calculator", "search", "python"]


class PersonaConfig(BaseModel):
    """Nested in SFTConfig as `persona:`; `lm.chat.Persona(**persona.model_dump())` renders it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("crawl2chat", min_length=1, max_length=64)
    maker: str = Field("the crawl2chat project", min_length=1, max_length=128)
    tools: list[ToolName] = ["calculator"]
