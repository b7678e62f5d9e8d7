"""Telemetry is off for the CLI, the servers it starts (embedded Prefect, Ray, MLflow) and `crawl2chat up`."""
import json
import subprocess
import sys
from pathlib import Path

from core.telemetry import TELEMETRY_OFF, disable_telemetry

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, os, sys
from crawl2chat.cli import main
main([])  # no stage: prints help, but sets up the environment every stage runs in
import prefect.settings
s = prefect.settings.get_current_settings()
print(json.dumps({"env": {k: os.environ.get(k) for k in sys.argv[1:]},
                  "prefect_server_analytics": s.server.analytics_enabled}))
"""


def test_cli_turns_telemetry_off_before_any_stage_runs(tmp_path):
    r = subprocess.run([sys.executable, "-c", PROBE, *TELEMETRY_OFF], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                         "PREFECT_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["env"] == TELEMETRY_OFF
    assert out["prefect_server_analytics"] is False


def test_an_explicit_choice_wins():
    env = {"DO_NOT_TRACK": "false"}
    disable_telemetry(env)
    assert env["DO_NOT_TRACK"] == "false" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_services_start_with_telemetry_off(tmp_path):
    from crawl2chat.services import _base_env

    env = _base_env(tmp_path)
    assert all(env[k] == v for k, v in TELEMETRY_OFF.items())
