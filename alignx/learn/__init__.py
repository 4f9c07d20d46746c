"""Learning: training-data formatting, held-out splits, DPO training (and, alongside, evaluation).

Modules (import them directly; this package imports nothing heavy):

- `alignx.learn.data`  - AlignX records -> DPO rows ``{"prompt", "chosen", "rejected", ...}`` for ICA
  and PBA, with the paper's 0-4 history sampling, demographics mixing and persona-swap helpers.
- `alignx.learn.split` - fixed, seeded, persona-balanced train / held-out splits, checked by hash.
- `alignx.learn.train` - DPO + LoRA training with TRL (`python -m alignx.learn.train --help`).
- `alignx.learn.evaluate`, `alignx.learn.benchmarks` - alignment accuracy and the benchmark registry.
"""
