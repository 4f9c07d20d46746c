"""What every benchmark script writes with ``--json``, for `benchmarks.run`."""

from __future__ import annotations

import json
from pathlib import Path


def emit(path: str | Path | None, *, ratio: float, goal: str, met: bool, summary: str, **details) -> dict:
    """Print the summary line and, when ``path`` is given, write the result JSON there.

    Args:
        path: where to write (``--json``), or None.
        ratio: the side-by-side ratio (higher is better, e.g. naive time / alignx time).
        goal: the goal, in words (``">= 5x"``).
        met: whether this run meets the goal.
        summary: one line with the measured numbers behind the ratio.
        details: anything else worth keeping (settings, raw timings).
    """
    result = {"ratio": round(float(ratio), 3), "goal": goal, "met": bool(met), "summary": summary, **details}
    print(f"{summary} -> {ratio:.2f}x (goal {goal}: {'met' if met else 'NOT met'})")
    if path:
        Path(path).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def skipped(path: str | Path | None, reason: str) -> dict:
    """A benchmark that cannot run here (an optional dependency is missing)."""
    print(f"skipped: {reason}")
    if path:
        Path(path).write_text(json.dumps({"skipped": reason}) + "\n")
    return {"skipped": reason}


def launch_app(env: dict[str, str], folder: Path, timeout: float = 300):
    """Start ``python app.py`` on a free port with its own store in ``folder``.

    Returns:
        (process, url, seconds until the page answered with HTTP 200).
    """
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    full_env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
                    ALIGNX_DB=str(folder / "alignx.db"), HF_HUB_OFFLINE="1", **env)
    log = open(folder / "app.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=full_env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}; see {folder / 'app.log'}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"app.py served no page within {timeout:.0f} s")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except Exception:
        proc.kill()
