"""A local Ray instance (no cluster address) listens on 127.0.0.1 only: GCS, raylet, agents, workers, driver."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs in its own process: the session's Ray (tests/conftest.py) may already be up in this one.
PROBE = r"""
import json, os, psutil, ray
from flows.runtime import ray_init_kwargs
kw = ray_init_kwargs(None, num_cpus=1)
kw["object_store_memory"] = 256 << 20
ray.init(**kw)
@ray.remote
def pid():
    return os.getpid()
ray.get([pid.remote() for _ in range(2)])  # start workers too
me = psutil.Process()
seen = []
for p in [me, *me.children(recursive=True)]:
    try:
        name = p.name()
        for c in p.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                seen.append([name, c.laddr.ip, c.laddr.port])
    except psutil.Error:
        pass
ray.shutdown()
print(json.dumps(seen))
"""


def test_local_ray_listens_on_loopback_only():
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=180,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONPATH": str(REPO),
                            "RAY_USAGE_STATS_ENABLED": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    listening = json.loads(r.stdout.strip().splitlines()[-1])
    names = {n for n, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # the probe saw Ray's servers
    exposed = [x for x in listening if x[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
