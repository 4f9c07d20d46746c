"""Shared fixtures. The real embedded model is used (no mocks): loading it once per session."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
PSOUPS = SHARED / "data" / "psoups" / "friendly_unfriendly.json"
DIMENSIONS_TSV = SHARED / "reference" / "dimensions.tsv"
FIXTURES = Path(__file__).parent / "fixtures"


@functools.cache
def bench_layout() -> Path:
    """The benchmark fixtures in the official folder layout, in a temporary folder.

    The P-Soups samples are stored as `*.sample.json` (no repository file carries a real
    benchmark's name); here they get their official names.
    """
    root = Path(tempfile.mkdtemp(prefix="alignx-bench-"))
    shutil.copytree(FIXTURES / "bench", root, dirs_exist_ok=True)
    for sample in root.rglob("*.sample.json"):
        sample.rename(sample.with_name(sample.name.replace(".sample.json", ".json")))
    return root


@pytest.fixture(scope="session")
def embedded_dir():
    from alignx.backbone import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def random_adapters(tmp_path_factory, embedded_dir):
    """Two real LoRA adapters (safetensors) with random, non-zero weights: `ica` and `pba`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    paths = {}
    for seed, name in enumerate(["ica", "pba"]):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                         task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg)
        model.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


@pytest.fixture(scope="session")
def backbone(random_adapters):
    """The embedded model in the app's default precision (nf4) with two adapters."""
    from alignx.backbone import BackboneConfig, load_backbone

    return load_backbone(BackboneConfig(adapters=random_adapters))


@pytest.fixture(scope="session")
def backbone_fp32(random_adapters):
    from alignx.backbone import BackboneConfig, load_backbone

    return load_backbone(BackboneConfig(precision="fp32", adapters=random_adapters))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The one `python app.py` of the test run, started on first use (tests/appserver.py)."""
    from appserver import app_server

    return app_server(tmp_path_factory.getbasetemp() / "app")


@pytest.fixture(scope="module")
def client(server):
    """A `gradio_client` session on that server (a new one per test module)."""
    from gradio_client import Client

    return Client(server.url, verbose=False)
