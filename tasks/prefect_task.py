"""Prefect task wrappers built when called, so a stage module imports without Prefect.

The stage functions in tasks/ also run on a bare GPU machine (benchmarks/),
where Prefect is not installed; only the flows call the wrappers.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def prefect_task(fn: Callable[..., Any], *, no_cache: bool = False, **options: Any) -> Callable[..., Any]:
    """`fn` run as a Prefect task with `options` (name, retries, ...); Prefect is imported on call.

    `no_cache=True` sets Prefect's NO_CACHE policy (its import needs Prefect too).
    """
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        from prefect import task

        opts = dict(options)
        if no_cache:
            from prefect.cache_policies import NO_CACHE

            opts["cache_policy"] = NO_CACHE
        return task(fn, **opts)(*args, **kwargs)

    return call
