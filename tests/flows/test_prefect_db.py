"""flows/prefect_db.py: a new Prefect store starts as a copy of one migrated once per machine.

Every Prefect server of this test run (the session's, `crawl2chat up`'s in the e2e test, the
embedded ones of the pipeline CLIs) starts on such a copy, so a copy that Prefect could not
serve fails them all; here: what is copied, when, and what is never touched.
"""
from __future__ import annotations

import sqlite3

from flows.prefect_db import default_db, seed, template


def _tables(db) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        names = [r[0] for r in c.execute("select name from sqlite_master where type = 'table'")]
        return {n: c.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def test_new_store_is_a_migrated_copy_and_an_existing_one_is_never_touched(tmp_path, monkeypatch):
    src = template()
    built = src.stat().st_mtime_ns
    db = tmp_path / "home" / "prefect.db"
    assert seed(db) is True
    assert db.read_bytes() == src.read_bytes()
    tables = _tables(db)
    assert tables["alembic_version"] == 1  # migrated to one revision: the server has nothing to run
    assert tables["block_type"] > 10  # and its block types registered, as a server does on a new store
    assert {"flow_run", "task_run", "deployment", "work_pool"} <= set(tables)
    assert not list(db.parent.glob("prefect.db-*")) and not list(db.parent.glob("*.tmp-*"))  # one file

    with sqlite3.connect(db) as c:  # a store in use: seeding again changes nothing
        c.execute("create table mine (x int)")
    before = db.read_bytes()
    assert seed(db) is False and db.read_bytes() == before
    assert template().stat().st_mtime_ns == built  # built once, then reused

    assert seed(None) is False  # a database set elsewhere is Prefect's business
    assert default_db(tmp_path) == tmp_path / "prefect.db"
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/prefect")
    assert default_db(tmp_path) is None
