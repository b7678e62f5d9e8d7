"""`python -m tests.support.prefect_server_main OWNER_PID PORT`: Prefect's API server for one
test run, stopped when the owning pytest process is gone (tests/support/shared.py)."""
import os
import signal
import subprocess
import sys
import time

import prefect


def main(owner_pid: int, port: int) -> int:
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                               "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                               "--port", str(port), "--log-level", "error", "--lifespan", "on"])

    def stop(*_):
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while server.poll() is None:
        try:
            os.kill(owner_pid, 0)
        except ProcessLookupError:
            stop()
        time.sleep(1)
    return server.returncode


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
