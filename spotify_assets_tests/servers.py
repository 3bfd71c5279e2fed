"""Start and always stop local Dagster processes for tests (127.0.0.1, free ports)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    # Each server runs in its own session: signal the whole group (webserver children).
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=timeout)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    # start_new_session: own process group, and SIGINT/SIGTERM back at their defaults
    return subprocess.Popen(
        args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        restore_signals=True,
    )


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-3000:] if log else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def dagster_servers(env: dict[str, str], logs: Path, daemon: bool = True):
    """Run ``dagster-webserver`` (and ``dagster-daemon run``) for the project; yield the base URL."""
    logs.mkdir(parents=True, exist_ok=True)
    # Create the instance's SQLite storages once, before two processes race to create them:
    # started together on a fresh DAGSTER_HOME, both stamp the schema and the loser's code
    # server fails with "alembic_version has more than one head" (seen in CI).
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
                   env=env, check=True, timeout=120, capture_output=True)
    port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        web_log = logs / "webserver.log"
        web = _start(
            [str(BIN / "dagster-webserver"), "-m", "spotify_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
            env, web_log,
        )
        processes.append(web)
        if daemon:
            processes.append(_start([str(BIN / "dagster-daemon"), "run", "-m", "spotify_assets.definitions"], env, logs / "daemon.log"))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/server_info", timeout=180, process=web, log=web_log)
        yield base
    finally:
        for process in reversed(processes):
            _stop(process)
