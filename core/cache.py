"""crawl2chat's cache on this machine: what is built once per machine and version, then copied."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/crawl2chat, else ~/.cache/crawl2chat (empty, migrated Prefect and MLflow stores)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crawl2chat"
