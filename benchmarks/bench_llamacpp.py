"""The three-way compare's aggregate decode speed vs llama.cpp decoding one stream of the same GGUF.

    pip install llama-cpp-python      # optional: compiles for several minutes
    python -m benchmarks.bench_llamacpp [--new-tokens 128] [--threads 2]

Side by side in one run, on the same threads: llama.cpp (`llama_cpp.Llama`) generates
``--new-tokens`` tokens greedily for the universal prompt from the embedded GGUF
(SmolLM2-135M-Instruct Q4_1); alignx runs the app's three-way compare (ICA, PBA, universal as one
batch, the shipped adapters) with the same budget. Ratio = alignx aggregate decode tok/s (3 rows)
/ llama.cpp tok/s (goal >= 1.0). Prefill is timed separately from decode on both sides. Without
llama-cpp-python the benchmark reports itself skipped. On a CPU with AMX, llama.cpp runs without
its AMX weight repacking, which crashes there (`avoid_amx_repack`).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from benchmarks.common import emit, skipped

ROOT = Path(__file__).resolve().parents[1]


def avoid_amx_repack() -> None:
    """On CPUs with AMX, llama.cpp repacks the weights into an AMX buffer, and its first decode
    then segfaults (ggml-org/llama.cpp#20824; seen here with llama-cpp-python 0.3.36 on this
    machine's Xeon, Q4_1). Turning off the extra buffer types (`use_extra_bufts`, llama.cpp's
    ``--no-extra-bufts``) keeps the plain CPU kernels. llama-cpp-python has no argument for it, so
    the default model parameters are patched."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "amx_int8" not in flags and "amx_bf16" not in flags:
        return
    import llama_cpp
    import llama_cpp.llama as llama_module

    default = llama_cpp.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    llama_module.llama_cpp.llama_model_default_params = without_extra_buffers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if importlib.util.find_spec("llama_cpp") is None:
        skipped(args.json, "llama-cpp-python is not installed (pip install llama-cpp-python)")
        return 0
    import torch
    from llama_cpp import Llama

    from alignx import personas
    from alignx.backbone import BackboneConfig, embedded_gguf_path, load_backbone

    torch.set_num_threads(args.threads)
    adapters = {n: str(ROOT / "assets" / "adapters" / n) for n in ("ica", "pba")
                if (ROOT / "assets" / "adapters" / n / "adapter_model.safetensors").is_file()}
    bb = load_backbone(BackboneConfig(precision=args.precision, adapters=adapters))
    persona = personas.load_examples()["teen-gamer"]
    prompts, routes = bb.compare_batch("Any tips for a weekend trip?", persona=persona, profile=persona.profile())
    n = args.new_tokens
    bb.generate(prompts, routes, max_new_tokens=2)  # warm-up
    # The product path (`Backbone.generate`: its kwargs, the per-row prefill, one batched decode),
    # with min_new_tokens so that every row decodes exactly n tokens.
    kwargs = bb._generate_kwargs(prompts, routes, n, 0.0, 1.0)

    def run(max_new: int) -> float:
        call = dict(kwargs, max_new_tokens=max_new, min_new_tokens=max_new)
        t = time.perf_counter()
        bb._prefill_rows(call)
        bb.model.generate(**call)
        return time.perf_counter() - t

    with torch.inference_mode():
        prefill = run(1)
        ours = 3 * (n - 1) / (run(n) - prefill)

    avoid_amx_repack()
    llm = Llama(model_path=str(embedded_gguf_path()), n_threads=args.threads, n_ctx=2048, verbose=False)
    text = prompts[-1]
    llm(text, max_tokens=2, temperature=0.0)  # warm-up
    t = time.perf_counter()
    llm(text, max_tokens=1, temperature=0.0)
    l_prefill = time.perf_counter() - t
    t = time.perf_counter()
    out = llm(text, max_tokens=n, temperature=0.0)
    produced = out["usage"]["completion_tokens"]
    theirs = max(produced - 1, 1) / (time.perf_counter() - t - l_prefill)
    ratio = ours / theirs
    emit(args.json, ratio=ratio, goal=">= 1.0x", met=ratio >= 1.0, alignx_tok_s=round(ours, 1),
         llamacpp_tok_s=round(theirs, 1), precision=bb.precision, threads=args.threads,
         summary=(f"decode on {args.threads} threads: alignx three-way {ours:.1f} tok/s aggregate ({bb.precision}) "
                  f"vs llama.cpp one stream {theirs:.1f} tok/s (Q4_1)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
