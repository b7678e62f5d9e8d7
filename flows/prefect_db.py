"""A new Prefect server's sqlite database: migrated once per machine, then copied.

A Prefect server on a new PREFECT_HOME runs Prefect's whole alembic history before it
answers: 13 s on a 2-core machine, against 7 s on a migrated database. Every
`crawl2chat <stage>` run without PREFECT_API_URL (the embedded server), every
`crawl2chat up` on a new state folder, the chaos benchmark's two stores and the test
suite's server started on a new one. So the empty, migrated database is built once per
machine and Prefect version (in a subprocess: Prefect's server settings are read once
per process) under ~/.cache/crawl2chat/, and each new store is a copy (~10 ms).

A store that exists is never touched, and one not at the default path (a Postgres URL,
PREFECT_SERVER_DATABASE_CONNECTION_URL) is left to Prefect.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from core.atomic import temp_name
from core.cache import cache_dir, sqlite_template

log = logging.getLogger(__name__)

# What a server does on a new store before it answers: the migrations, then its block types.
_MIGRATE = """
import asyncio
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration

async def main():
    db = provide_database_interface()
    await db.create_db()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)
        await session.commit()

asyncio.run(main())
"""


def template(timeout: float = 300) -> Path:
    """The migrated empty database of this Prefect version, built on first use."""
    import prefect

    def env_for(db: Path) -> dict[str, str]:
        env = {**os.environ, "PREFECT_HOME": str(db.parent),
               "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}"}
        env.pop("PREFECT_API_URL", None)
        return env

    return sqlite_template(cache_dir() / f"prefect-{prefect.__version__}-empty.db", _MIGRATE, env_for, "Prefect",
                           timeout)


def default_db(home: str | Path | None = None) -> Path | None:
    """The sqlite file of a server started with PREFECT_HOME=`home` (None: this process's
    settings), or None when its database is set elsewhere (a Postgres URL, another file)."""
    if home is not None:
        if os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or os.environ.get(
                "PREFECT_API_DATABASE_CONNECTION_URL"):
            return None
        return Path(home).expanduser() / "prefect.db"
    import prefect.settings

    url = prefect.settings.get_current_settings().server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    prefix = "sqlite+aiosqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) and ":memory:" not in url else None


def seed(db: Path | None) -> bool:
    """Put a copy of the template at `db` unless a database is there; True if it did.

    The copy gets its final name by a hard link, which fails if another process put one
    there meanwhile: a store is never replaced under a running server.
    """
    if db is None or db.exists():
        return False
    try:
        src = template()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:  # Prefect migrates it itself then
        log.warning("no Prefect database template (%s); the server will run its migrations", exc)
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(db)
    shutil.copyfile(src, tmp)
    try:
        os.link(tmp, db)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
