"""DPO training throughput: alignx's CPU setup vs TRL's default configuration, side by side.

Both runs train a LoRA adapter with TRL's `DPOTrainer` on the SAME rows (the first ``--pairs`` PBA
rows of the train side of the P-SOUPS split, or of the tiny test fixture, built by
`alignx.learn.train.build_rows`) with the SAME model (embedded SmolLM2-135M) and the same batch
size, for ``--epochs`` passes. The clock covers everything that depends
on the setup: trainer construction (tokenisation and, for alignx, the reference log-prob
precompute) plus training. Prints pairs/s of each and the ratio (goal >= 1.5x).

- TRL defaults: `DPOConfig` defaults on CPU (bf16 autocast, gradient checkpointing, max_length
  1024, reference forward every step with the adapter disabled), fp32 weights, LoRA r=16 on peft's
  default modules (q_proj, v_proj) - what `trl dpo --use_peft` gives.
- alignx: exactly what ``alignx train --config configs/recipes/cpu_smollm2.yaml`` builds
  (`alignx.learn.train.build_trainer`): bf16 base weights (AMX) + fp32 LoRA weights, the
  prefix-sharing forward (each prompt once, chosen and rejected from its KV cache), precomputed
  reference log-probs, no gradient checkpointing, LoRA only on the top layers, the layers below
  them run once per pair (in the reference pass; `cache_lower_layers`), length-grouped batches.
  On a CPU without native bf16 both run in fp32: TRL's default bf16 autocast is turned off for it
  too, since emulated bf16 would slow it ~7x and make the ratio meaningless.

    python -m benchmarks.bench_train --pairs 16 --batch 8 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import emit  # noqa: E402
PSOUPS = ROOT.parent / "shared" / "data" / "psoups" / "friendly_unfriendly.json"
TINY = ROOT / "tests" / "fixtures" / "psoups_tiny.json"
RECIPE = ROOT / "configs" / "recipes" / "cpu_smollm2.yaml"


def alignx_args(pairs: int, batch: int, threads: int, out: str, epochs: int = 1):
    """The product's CPU recipe (configs/recipes/cpu_smollm2.yaml) limited to ``pairs`` PBA rows."""
    from alignx.learn import train

    data = ["--data", str(PSOUPS), "--split", "psoups_friendly_unfriendly"] if PSOUPS.is_file() else ["--data", str(TINY)]
    return train.parse_args(["--config", str(RECIPE), "--method", "pba", *data, "--out", out, "--limit", str(pairs),
                             "--per_device_train_batch_size", str(batch), "--threads", str(threads),
                             "--logging_steps", "1", "--disable_tqdm", "true", "--seed", "0",
                             "--num_train_epochs", str(epochs)])[:2]


def run(setup: str, pairs: int, batch: int, threads: int, epochs: int = 1) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from alignx.backbone import embedded_model_dir
    from alignx.learn import train

    torch.set_num_threads(threads)
    out = tempfile.mkdtemp(prefix=f"bench_{setup}_")
    a, d = alignx_args(pairs, batch, threads, out, epochs)
    t0 = time.perf_counter()
    if setup == "trl-default":
        src = embedded_model_dir()
        tok = AutoTokenizer.from_pretrained(src)
        rows, _, _ = train.build_rows(a, tok, "chat", d.seed)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        args = DPOConfig(output_dir=out, use_cpu=True, per_device_train_batch_size=batch, num_train_epochs=epochs,
                         logging_steps=1, save_strategy="no", report_to="none", seed=0, disable_tqdm=True)
        if train.resolve_precision("auto", "cpu") == "fp32":
            train.set_autocast(args, bf16=False)
        trainer = DPOTrainer(model=model, args=args, processing_class=tok,
                             train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")}
                                                              for r in rows]),
                             peft_config=LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM"))
    else:
        trainer, _ = train.build_trainer(a, d)
    t_build = time.perf_counter() - t0
    result = trainer.train()
    seconds = time.perf_counter() - t0
    n = len(trainer.train_dataset) * epochs
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"setup": setup, "pairs": n, "seconds": round(seconds, 1), "build_seconds": round(t_build, 1),
            "pairs_per_second": round(n / seconds, 4), "train_loss": result.training_loss,
            "first_loss": losses[0] if losses else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=16, help="pairs per run (one epoch)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1, help="passes over the pairs (the reference pass runs once)")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args()
    results = [run(s, a.pairs, a.batch, a.threads, a.epochs) for s in ("trl-default", "alignx")]
    ratio = results[1]["pairs_per_second"] / results[0]["pairs_per_second"]
    for r in results:
        print(f"{r['setup']:>12}: {r['pairs']} pairs in {r['seconds']} s = {r['pairs_per_second']} pairs/s "
              f"(setup incl. precompute {r['build_seconds']} s; loss {r['train_loss']:.4f})")
    emit(a.json, ratio=ratio, goal=">= 1.5x", met=ratio >= 1.5, results=results, epochs=a.epochs,
         summary=(f"{results[1]['pairs']} pair-steps ({a.epochs} epochs): alignx {results[1]['pairs_per_second']} pairs/s vs TRL defaults "
                  f"{results[0]['pairs_per_second']} pairs/s (incl. setup and reference precompute)"))


if __name__ == "__main__":
    main()
