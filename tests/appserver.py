"""Start `python app.py` once per test run, as the README starts it, on a free port with its own
SQLite store in a temp folder. Shared by tests/test_app.py and tests/test_browser.py so the
embedded model loads once; the process is stopped at interpreter exit."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 180


@dataclass
class AppServer:
    url: str
    proc: subprocess.Popen
    folder: Path

    @property
    def log(self) -> str:
        return (self.folder / "app.log").read_text(errors="replace")


_servers: list[AppServer] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(server: AppServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()


def app_server(folder: Path) -> AppServer:
    """The running app (started on first use). ``folder`` holds its store and its log."""
    if _servers and _servers[0].proc.poll() is None:
        return _servers[0]
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               ALIGNX_DB=str(folder / "alignx.db"),
               HF_HUB_OFFLINE="1")  # a hub id fails at once instead of waiting on the network
    log = open(folder / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    server = AppServer(f"http://127.0.0.1:{port}/", proc, folder)
    atexit.register(_stop, server)
    deadline = time.time() + STARTUP_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode}:\n{server.log}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as r:
                if r.status == 200:
                    _servers[:] = [server]
                    return server
        except OSError:
            time.sleep(0.5)
    _stop(server)
    raise RuntimeError(f"app.py did not serve a page within {STARTUP_TIMEOUT} s:\n{server.log}")
