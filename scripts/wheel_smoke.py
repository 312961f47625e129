"""The package as users get it: build the wheel, install it into a fresh virtual environment, start the
``schedule-grpc`` console script from there (outside the source tree) and wait for health SERVING.

    python scripts/wheel_smoke.py [--keep DIR]

Exits 0 when the installed server answered SERVING and stopped cleanly on SIGTERM; 1 otherwise, with
the server's log. An editable install (what development uses) would hide a module missing from the wheel.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drill_common import ROOT, free_port, wait_serving

START_TIMEOUT_S = 60.0


def run(*command: str | Path, cwd: Path | None = None) -> None:
    print("$", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=cwd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return smoke(args.keep)
    with tempfile.TemporaryDirectory(prefix="wheel-smoke-") as work:
        return smoke(Path(work))


def smoke(work: Path) -> int:
    dist, venv, home = work / "dist", work / "venv", work / "home"
    home.mkdir(exist_ok=True)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, ROOT)
    wheels = sorted(dist.glob("schedule_grpc-*.whl"))
    if not wheels:
        print("no wheel was built", file=sys.stderr)
        return 1
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheels[-1])
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_DATABASE_URL": f"sqlite:///{home / 'schedule.db'}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_SHUTDOWN_DRAIN_S": "0.2",
        "SCHEDULE_LOG_FORMAT": "text",
    }
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        # cwd outside the source tree: only the installed package can be imported
        server = subprocess.Popen([venv / "bin" / "schedule-grpc"], cwd=home, env=env, stdout=log, stderr=log)
        try:
            serving = wait_serving(f"127.0.0.1:{port}", START_TIMEOUT_S)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
    started = time.strftime("%H:%M:%S")
    if not serving or code != 0:
        print(f"{started} FAILED: serving={serving} exit={code}; server log:", file=sys.stderr)
        print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    print(f"{started} ok: {wheels[-1].name} installed in a fresh venv answered SERVING and exited 0 on SIGTERM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
