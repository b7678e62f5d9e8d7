"""Usage telemetry off for everything the project starts (CLI, embedded servers, `crawl2chat up`).

Prefect's server reports analytics, MLflow and Ray send usage stats, by default.
The machines this runs on have no internet at run time and the data is the
user's business: every service starts with these set. `disable_telemetry()`
only fills in variables the user has not set, so an explicit opt-in wins.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the (embedded) Prefect server's analytics
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",  # the cross-tool convention (MLflow honours it too)
}


def disable_telemetry(env: MutableMapping[str, str] | None = None) -> None:
    """Set every TELEMETRY_OFF variable not already set in `env` (default: this process)."""
    env = os.environ if env is None else env
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
