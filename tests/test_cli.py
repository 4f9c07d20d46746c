"""The `alignx` command line: real subprocesses for the light commands, the real model for generate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alignx import preferences
from alignx.cli import main
from conftest import FIXTURES


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignx", *args], input=stdin, capture_output=True, text=True)


def _vec(**dims) -> list[float]:
    v = [0.5] * 90
    for k, x in dims.items():
        v[int(k[1:])] = x
    return v


def test_profile_from_directions_stdin():
    history = [_vec(d0=1, d3=0, d85=1), _vec(d0=1, d3=0, d85=0.5)]
    res = run_cli("profile", stdin=json.dumps(history))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "Young, Low Extraversion, Likes outdoors\n"  # 85 averages to 0.75 >= 0.6


def test_profile_fallback_when_all_neutral():
    res = run_cli("profile", stdin=json.dumps([_vec(d7=0.55)]))
    assert res.returncode == 0, res.stderr
    # every dimension is neutral; max 0.55 vs min 0.5: 1 - 0.55 < 0.5 so the max side is kept
    assert res.stdout.strip() == preferences.DIMENSIONS[7].positive_label


def test_profile_parse_round_trip():
    lines = [ln for ln in (FIXTURES / "profiles.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    line = next(ln for ln in lines if "(neatness, organization" in ln or "(e.g., art" in ln)  # comma labels
    res = run_cli("profile", "--parse", stdin=line + "\n")
    assert res.returncode == 0, res.stderr
    vector = json.loads(res.stdout)
    assert len(vector) == 90 and preferences.verbalize(vector) == line


@pytest.mark.parametrize("stdin, message", [
    ("not json", "not JSON"),
    ("[]", "non-empty JSON list"),
    (json.dumps([[0.5] * 89]), "90"),
    (json.dumps([[2.0] * 90]), "[0, 1]"),
])
def test_profile_bad_input_is_one_clear_error(stdin, message):
    res = run_cli("profile", stdin=stdin)
    assert res.returncode == 2
    assert res.stderr.startswith("alignx profile: error:") and message in res.stderr
    assert "Traceback" not in res.stderr


def test_profile_parse_unknown_label():
    res = run_cli("profile", "--parse", stdin="Young, Likes unicorns")
    assert res.returncode == 2 and "Likes unicorns" in res.stderr


def test_generate_all_three_methods_one_batch(capsys, random_adapters):
    code = main(["generate", "--method", "all", "--persona", str(FIXTURES / "persona_example.json"),
                 "--prompt", "Any tips for a weekend trip?", "--max-new-tokens", "24", "--json",
                 "--adapter", f"ica={random_adapters['ica']}", "--adapter", f"pba={random_adapters['pba']}"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backbone"]["precision"] == "nf4"
    assert [o["method"] for o in out["outputs"]] == ["ica", "pba", "universal"]
    assert [o["adapter"] for o in out["outputs"]] == ["ica", "pba", None]
    texts = [o["text"] for o in out["outputs"]]
    assert all(t.strip() for t in texts) and len(set(texts)) == 3
    assert "Likes humor" in out["profile"] and out["profile"] in out["outputs"][1]["prompt"]
    assert "Trail mix" in out["outputs"][0]["prompt"] and "Trail mix" not in out["outputs"][2]["prompt"]


def test_generate_text_output_without_adapters(capsys):
    code = main(["generate", "--method", "universal", "--prompt", "Say hi.", "--max-new-tokens", "6"])
    assert code == 0
    assert capsys.readouterr().out.startswith("=== UNIVERSAL (no adapter) ===\n")


@pytest.mark.parametrize("args, message", [
    (["--method", "ica"], "ICA needs a persona"),
    (["--method", "pba"], "PBA needs a profile"),
    (["--method", "pba", "--profile", "Likes unicorns"], "--profile"),
    (["--persona", "/nonexistent.json"], "nonexistent"),
    (["--method", "universal", "--adapter", "ica"], "NAME=FOLDER"),
])
def test_generate_bad_input(capsys, args, message):
    assert main(["generate", "--prompt", "hi", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignx generate: error:") and message in err


def test_parser_is_light_and_lists_all_commands():
    code = ("import sys; from alignx.cli import make_parser; p = make_parser(); "
            "print(sorted(p._subparsers._group_actions[0].choices)); print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["['control', 'eval', 'generate', 'infer', 'privacy', 'profile', 'train']", "False"]


def test_cli_precisions_match_backbone():
    from alignx import backbone, cli

    assert cli.PRECISIONS == backbone.PRECISIONS
