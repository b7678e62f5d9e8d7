"""What `chat` and `serve` enable for a checkpoint: its tools, the search index, the system message.

One place, so the terminal chat, the server, the web page and the API offer the
same tools for the same checkpoint: by default exactly the tools it was trained
to call (lm.tools.checkpoint_tools), `--tools` overriding. The search tool needs
an index: `--search-index`, else the index of the run the checkpoint belongs to
(`<run root>/index`, complete), else search stays off and a note says how to turn
it on. The persona's system message names exactly the tools enabled, so a
disabled tool is never offered to the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ToolChoice:
    names: list[str]                 # enabled, in the registry's order
    search_index: str | None = None
    notes: list[str] = field(default_factory=list)  # what a user should know (search left off, ...)


def run_index(meta: dict) -> str | None:
    """The complete search index of the run a checkpoint belongs to (`<root>/<stage>/final` → `<root>/index`)."""
    from lm.datasets.search import index_available

    path = meta.get("path")
    if not path:
        return None
    for up in list(Path(path).resolve().parents)[:3]:
        if index_available(up / "index"):
            return str(up / "index")
    return None


def choose_tools(requested: str | list[str] | None, meta: dict, search_index: str | None = None) -> ToolChoice:
    """The tools to enable: `requested` (a comma list or names; '' none) or, when None, the checkpoint's."""
    from lm.tools import TOOL_NAMES, checkpoint_tools

    if isinstance(requested, str):
        requested = [t.strip() for t in requested.split(",") if t.strip()]
    explicit = requested is not None
    names = list(requested) if explicit else checkpoint_tools(meta)
    unknown = sorted(set(names) - set(TOOL_NAMES))
    if unknown:
        raise ValueError(f"unknown tool(s) {unknown}; known: {list(TOOL_NAMES)}")
    notes = []
    if "search" in names and search_index is None:
        search_index = run_index(meta)
        if search_index is None:
            if explicit:
                raise ValueError("the search tool needs an index directory: --search-index DIR "
                                 "(the index stage's output, crawl2chat index --out DIR)")
            names.remove("search")
            notes.append("search is off: the model was trained to call it, but no index was found beside the "
                         "checkpoint; pass --search-index DIR (the index stage's output) to turn it on")
    ordered = [t for t in TOOL_NAMES if t in names]
    return ToolChoice(ordered, search_index if "search" in ordered else None, notes)


def build_tools(choice: ToolChoice):
    """The registry for a ToolChoice (None when no tool is enabled)."""
    from lm.tools import tools_from_names

    return tools_from_names(choice.names, choice.search_index) if choice.names else None


def persona_system(meta: dict, choice: ToolChoice) -> str:
    """The persona's system message (the checkpoint's, from SFT) naming exactly the enabled tools."""
    from lm.chat import Persona

    return Persona.from_meta(meta, choice.names).system_message()
