#!/usr/bin/env bash
# A dry run of the Hugging Face Space, on this machine: do what the Space builder does, from the
# Space's own files only, then start the app and wait for the page.
#
#   bash scripts/space_dry_run.sh [WORKDIR]        # default WORKDIR: /tmp/alignx-space
#   REUSE_VENV=1 bash scripts/space_dry_run.sh     # keep WORKDIR/venv, redo steps 3-5
#
# 1. a clean virtualenv (python3.11, as README's `python_version`);
# 2. pip install -r pre-requirements.txt, then -r requirements.txt, then gradio==<sdk_version>
#    (the builder's own step; the version comes from README's front matter);
# 3. the repository files copied into WORKDIR/app (the Space's working folder; no .venv, no runs);
# 4. `python app.py` with a fresh model cache and store, SPACE_ID set as on a Space, on a free port;
# 5. waits for HTTP 200 on localhost, then asks /profile (no model) and /compare (the backbone,
#    8 new tokens) through gradio_client and prints what they return, then stops the app.
# Prints the time of each step. Needs network access to a pip registry; nothing else is fetched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/alignx-space}"
PYTHON="${PYTHON:-python3.11}"
PAGE_TIMEOUT="${PAGE_TIMEOUT:-300}"
MODEL_TIMEOUT="${MODEL_TIMEOUT:-900}"

now() { date +%s; }
# pip install, without the "Location ... is ignored" lines a machine's extra index settings can print
pip_install() {
    "$PY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}
step() { echo "[$(date +%H:%M:%S)] $*"; }

sdk_version=$(sed -n '1,/^---$/{/^---$/!p}' "$ROOT/README.md" | sed -n 's/^sdk_version: *//p' | tr -d '"')
[ -n "$sdk_version" ] || { echo "README.md has no sdk_version in its front matter" >&2; exit 2; }

PY="$WORK/venv/bin/python"
t0=$(now)
if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$PY" ]; then
    step "REUSE_VENV=1: keeping $WORK/venv"
    rm -rf "$WORK/app" "$WORK/cache" "$WORK/alignx.db"*
else
    rm -rf "$WORK"
    mkdir -p "$WORK"
    step "virtualenv in $WORK/venv ($($PYTHON --version))"
    "$PYTHON" -m venv "$WORK/venv"
    step "pip install -r pre-requirements.txt"
    pip_install -r "$ROOT/pre-requirements.txt"
    step "pip install -r requirements.txt"
    pip_install -r "$ROOT/requirements.txt"
    step "pip install gradio==$sdk_version (the builder's SDK step)"
    pip_install "gradio==$sdk_version"
fi
t_install=$(( $(now) - t0 ))
step "installed in ${t_install} s; $("$PY" -m pip list 2>/dev/null | tail -n +3 | wc -l) packages"

step "copying the repository into $WORK/app"
mkdir -p "$WORK/app"
tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude='./results*' --exclude=./tests/artifacts \
    --exclude='__pycache__' --exclude=./.pytest_cache --exclude='*.egg-info' -cf - . | tar -C "$WORK/app" -xf -

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "python app.py on port $port (log: $WORK/app.log)"
t1=$(now)
(cd "$WORK/app" && exec env SPACE_ID=dry-run/alignx GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT="$port" \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 ALIGNX_CACHE="$WORK/cache" ALIGNX_DB="$WORK/alignx.db" \
    "$PY" app.py >"$WORK/app.log" 2>&1) &
app_pid=$!
trap 'kill "$app_pid" 2>/dev/null || true' EXIT

code=000
while [ $(( $(now) - t1 )) -lt "$PAGE_TIMEOUT" ]; do
    if ! kill -0 "$app_pid" 2>/dev/null; then
        echo "app.py exited; its log:" >&2; cat "$WORK/app.log" >&2; exit 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
    [ "$code" = 200 ] && break
    sleep 1
done
[ "$code" = 200 ] || { echo "no page within $PAGE_TIMEOUT s; log:" >&2; cat "$WORK/app.log" >&2; exit 1; }
t_page=$(( $(now) - t1 ))
step "page answered HTTP 200 after ${t_page} s"

step "calling /profile and /compare through gradio_client (the model loads in the background)"
t2=$(now)
"$PY" - "$port" "$MODEL_TIMEOUT" <<'PYEOF' || true
import json, sys, time
from gradio_client import Client

port, timeout = sys.argv[1], float(sys.argv[2])
client = Client(f"http://127.0.0.1:{port}/", verbose=False)
v = [0.5] * 90
v[73] = 1.0
print("  /profile ->", client.predict(json.dumps(v), api_name="/profile"))
start = time.time()
try:
    out = client.submit("", json.dumps(v), "Any tips for a weekend trip?", 8, 0.0, 0,
                        api_name="/compare").result(timeout=timeout)
    print(f"  /compare -> PBA {out[1]!r}; status {out[-1]!r} ({time.time() - start:.0f} s)")
except Exception as exc:  # the app's message, e.g. a model that could not load
    print(f"  /compare raised after {time.time() - start:.0f} s: {exc}")
PYEOF
step "model check took $(( $(now) - t2 )) s"
kill "$app_pid" 2>/dev/null || true
wait "$app_pid" 2>/dev/null || true
trap - EXIT
step "done: install ${t_install} s, page ${t_page} s; app log: $WORK/app.log"
