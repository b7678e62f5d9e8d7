"""FineWeb's quality filters, straight from datatrove: Gopher repetition, Gopher
quality, C4 (without the terminal-punctuation rule, as FineWeb) and FineWeb quality.

We call each block's `filter(doc)` ourselves rather than datatrove's `run()`
chain, so every drop keeps the block's own reason and the orchestrator sees
each stage. Defaults are the blocks' own (= FineWeb's published settings).
"""
from __future__ import annotations

import functools

QUALITY_STAGES = ("gopher_repetition", "gopher_quality", "c4", "fineweb")


# Per-process resource cache: the filter objects (and spaCy's tokenizer they
# load on first use) are built once per worker process, keyed on which are on.
@functools.lru_cache(maxsize=4)
def load_quality_filters(gopher_repetition: bool = True, gopher_quality: bool = True,
                         c4: bool = True, fineweb: bool = True) -> tuple[tuple[str, object], ...]:
    """(stage name, datatrove filter) for each enabled stage, in FineWeb's order."""
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter)

    chosen = []
    if gopher_repetition:
        chosen.append(("gopher_repetition", GopherRepetitionFilter()))
    if gopher_quality:
        chosen.append(("gopher_quality", GopherQualityFilter()))
    if c4:
        chosen.append(("c4", C4QualityFilter(filter_no_terminal_punct=False)))
    if fineweb:
        chosen.append(("fineweb", FineWebQualityFilter()))
    return tuple(chosen)


def verdict(flt, doc) -> str | None:
    """None if the datatrove filter keeps `doc`, else its drop reason.

    C4's filter edits `doc.text` in place (drops lines) — as in FineWeb, the
    edited text is what later stages and the output see.
    """
    res = flt.filter(doc)
    if res is True:
        return None
    if isinstance(res, tuple):
        return str(res[1]) if len(res) > 1 and res[1] else "filtered"
    return None if res else "filtered"


def check_text(text: str, filters=None) -> tuple[str, str | None, str | None]:
    """Run the quality filters on one text: (possibly edited text, failing stage, reason)."""
    from datatrove.data import Document

    doc = Document(text=text, id="")
    for stage, flt in filters if filters is not None else load_quality_filters():
        reason = verdict(flt, doc)
        if reason is not None:
            return doc.text, stage, reason
    return doc.text, None, None
