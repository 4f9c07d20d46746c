"""The app, started as the README starts it, answered over HTTP and through gradio_client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app.py did not serve a page within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_page_is_served(server):
    with urllib.request.urlopen(server, timeout=10) as r:
        html = r.read().decode()
    assert "<title>alignx</title>" in html or "alignx" in html


def test_compare_endpoint_returns_three_outputs(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    persona = (ROOT / "tests" / "fixtures" / "persona_example.json").read_text()
    ica, pba, universal, prompts = client.predict(
        "Any tips for a weekend trip?", persona, "", 16, 0.0, 0, api_name="/compare")
    assert ica.strip() and pba.strip() and universal.strip()
    assert "Trail mix" in prompts  # ICA sees the raw persona
    assert "Likes humor" in prompts  # PBA sees the profile built from the persona's direction


def test_compare_bad_persona_is_a_clear_error(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="not valid JSON"):
        client.predict("hi", "{oops", "", 8, 0.0, 0, api_name="/compare")
    # the same server keeps working afterwards
    out = client.predict("hi", json.dumps({"Demographic Information": "A chef."}), "Young", 8, 0.0, 0,
                         api_name="/compare")
    assert out[2].strip()
