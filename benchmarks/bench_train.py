"""DPO training throughput: alignx's CPU setup vs TRL's default configuration, side by side.

Both runs train a LoRA adapter with TRL's `DPOTrainer` on the SAME rows (P-SOUPS PBA rows from the
train side of the split, or the tiny test fixture) with the SAME model (embedded SmolLM2-135M) and
the same batch size, for one pass over ``--pairs`` pairs. The clock covers everything that depends
on the setup: trainer construction (tokenisation and, for alignx, the reference log-prob
precompute) plus training. Prints pairs/s of each and the ratio (goal >= 1.5x).

- TRL defaults: `DPOConfig` defaults on CPU (bf16 autocast, gradient checkpointing, max_length
  1024, reference forward every step with the adapter disabled), fp32 weights, LoRA r=16 on peft's
  default modules (q_proj, v_proj) - what `trl dpo --use_peft` gives.
- alignx (configs/recipes/cpu_smollm2.yaml): bf16 base weights (AMX) + fp32 LoRA weights,
  precomputed reference log-probs, no gradient checkpointing, LoRA only on the top 8 layers (the
  backward pass stops there), length-grouped batches, max_length 640.

    python benchmarks/bench_train.py --pairs 16 --batch 4 --json /tmp/bench_train.json
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
PSOUPS = ROOT.parent / "shared" / "data" / "psoups" / "friendly_unfriendly.json"
TINY = ROOT / "tests" / "fixtures" / "psoups_tiny.json"


def rows_for(n: int, tokenizer) -> list[dict]:
    from alignx.learn.data import build_training_rows
    from alignx.learn.split import split_indices
    from alignx.schema import load_records

    if PSOUPS.is_file():
        records = load_records(PSOUPS)
        train, _ = split_indices("psoups_friendly_unfriendly", records)
        records = [records[i] for i in train]
    else:
        records = load_records(TINY)
    rows = build_training_rows(records, "pba", seed=0, style="chat", tokenizer=tokenizer, augment=["swap"])
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows[:n]]


def run(setup: str, rows: list[dict], batch: int, threads: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    from alignx.backbone import embedded_model_dir
    from alignx.learn.train import AlignXTrainArguments, _add_lengths, _trainer_class, lora_config

    torch.set_num_threads(threads)
    src = embedded_model_dir()
    tok = AutoTokenizer.from_pretrained(src)
    out = tempfile.mkdtemp(prefix=f"bench_{setup}_")
    common = dict(output_dir=out, use_cpu=True, per_device_train_batch_size=batch, num_train_epochs=1,
                  logging_steps=1, save_strategy="no", report_to="none", seed=0, disable_tqdm=True)
    if setup == "trl-default":
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        args = DPOConfig(**common)
        peft = LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM")
    else:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
        args = DPOConfig(**common, bf16=True, gradient_checkpointing=False, precompute_ref_log_probs=True,
                         precompute_ref_batch_size=2 * batch, max_length=640,
                         train_sampling_strategy="group_by_length")
        peft = lora_config(AlignXTrainArguments(lora_top_layers=8), model.config.num_hidden_layers)
    t0 = time.perf_counter()
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                               processing_class=tok, peft_config=peft)
    trainer.train_dataset = _add_lengths(trainer.train_dataset)
    t_build = time.perf_counter() - t0
    result = trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"setup": setup, "pairs": len(rows), "seconds": round(seconds, 1), "build_seconds": round(t_build, 1),
            "pairs_per_second": round(len(rows) / seconds, 4), "train_loss": result.training_loss,
            "first_loss": losses[0] if losses else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=16, help="pairs per run (one epoch)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args()
    from transformers import AutoTokenizer

    from alignx.backbone import embedded_model_dir

    rows = rows_for(a.pairs, AutoTokenizer.from_pretrained(embedded_model_dir()))
    results = [run(s, rows, a.batch, a.threads) for s in ("trl-default", "alignx")]
    ratio = results[1]["pairs_per_second"] / results[0]["pairs_per_second"]
    for r in results:
        print(f"{r['setup']:>12}: {r['pairs']} pairs in {r['seconds']} s = {r['pairs_per_second']} pairs/s "
              f"(setup incl. precompute {r['build_seconds']} s; loss {r['train_loss']:.4f})")
    print(f"speed-up alignx / TRL defaults: {ratio:.2f}x (goal >= 1.5x)")
    if a.json:
        a.json.write_text(json.dumps({"results": results, "ratio": ratio}, indent=1) + "\n")


if __name__ == "__main__":
    main()
