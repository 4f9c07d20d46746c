"""DPO training of ICA / PBA LoRA adapters with TRL's `DPOTrainer` (reference/ALIGNX.md §4-§6).

The policy is the backbone plus a fresh LoRA adapter; the reference is the same backbone with the
adapter disabled (no second model copy). DPO loss as in the paper (sigmoid, β = 0.1, summed
response log-probs). QLoRA (nf4 base, bf16 compute) when CUDA is present.

CPU (the embedded SmolLM2-135M; what ships in ``assets/adapters/``)::

    python -m alignx.learn.train --config configs/recipes/cpu_smollm2.yaml \\
        --method pba --data ../shared/data/psoups/friendly_unfriendly.json \\
        --split psoups_friendly_unfriendly --out assets/adapters/pba

The paper's recipe (Llama-3.1-8B-Instruct, full data) on 8 GPUs::

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m alignx.learn.train \\
        --config configs/recipes/paper_full_8b.yaml --method ica --data alignx_train/ --out runs/ica

Every `DPOConfig` field is a flag too (``--per_device_train_batch_size 4``); ``--out``, ``--epochs``
and ``--lr`` are short for ``--output_dir``, ``--num_train_epochs`` and ``--learning_rate``.
Output: ``adapter_model.safetensors`` + ``adapter_config.json`` + ``train_log.json`` (command, seed,
data hash, wall time, machine, final loss, ``rewards/accuracies``).

Speed on the CPU (see ``benchmarks/bench_train.py``): reference log-probs precomputed once, and
the same pass keeps the states entering the first LoRA layer, so every training step runs only
the adapter's layers (``cache_lower_layers``); optionally no backward pass through the prompt
(``prompt_grad false``); bf16 base weights where the CPU has native bf16 (AMX / AVX512-BF16), with
fp32 LoRA weights; no gradient checkpointing; length-grouped batches; short ``max_length``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alignx.learn.data import REFERENCES, pair_keys, paired_order

ALIASES = {"--out": "--output_dir", "--epochs": "--num_train_epochs", "--lr": "--learning_rate"}
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
# TRL's per-pair losses that the prefix-sharing forward implements (`preference_loss`)
FAST_LOSSES = ("sigmoid", "hinge", "ipo", "robust", "nca_pair", "bco_pair", "apo_zero", "apo_down", "sft",
               "sigmoid_norm")
# alignx's own terms, combined with those by loss_weights; only the prefix-sharing forward has them
OWN_LOSSES = ("drift",)
DISTILL_CONTEXTS = ("task", "policy", "reference")  # what `teacher_prompts` puts the style before


@dataclass
class AlignXTrainArguments:
    """alignx's own training options (everything else is TRL's `DPOConfig`).

    Args:
        method (`str`): ``ica`` (raw persona in the prompt) or ``pba`` (preference profile).
        data (`str`): AlignX-style records: .json / .jsonl / .parquet file or parquet folder.
        split (`str`, *optional*): a split in ``assets/splits``; only its TRAIN side is used.
        model (`str`, defaults to `"embedded"`): ``embedded`` (SmolLM2-135M-Instruct), a HF id or folder.
        precision (`str`, defaults to `"auto"`): ``auto`` = nf4 (QLoRA) on CUDA, bf16 weights on a
            CPU with native bf16 (AMX / AVX512-BF16), else fp32; or ``fp32``, ``bf16``, ``nf4``.
        prompt_style (`str`, defaults to `"auto"`): a template of `alignx.prompts`; ``auto`` =
            ``official-train`` for Llama-3 models, else ``chat`` (the wording the backbone is
            evaluated and served with).
        augment (`str`): comma list of augmentations of `alignx.learn.data`: ``swap``, ``contrast``,
            ``history``, ``history_swap``. History targets never hold a text of a record outside the
            training records (the split's held-out side, the validation records).
        limit (`int`, *optional*): use only the first N training rows (after shuffling).
        validation_per_persona (`int`): validation records per persona held back from the TRAIN side.
        validation_seed (`int`, *optional*): seed of that draw (default: the training seed).
        lora_r, lora_alpha, lora_dropout, lora_target_modules, lora_top_layers: the LoRA adapter.
        demo_prob, demo_only_prob (`float`): demographics mixing rule (`alignx.learn.data`).
        threads (`int`, *optional*): torch intra-op threads.
        prefix_sharing (`bool`, defaults to `True`): one prompt forward per pair, chosen and rejected
            continue from its KV cache (`alignx.logprobs`); falls back to TRL's concatenated
            forward for loss types outside `FAST_LOSSES`.
        cache_lower_layers (`bool`, defaults to `True`): with ``lora_top_layers``, prefix sharing and
            precomputed reference log-probs, the reference pass also keeps the states entering the
            first adapter layer (the layers below compute the same states whatever the adapter's
            weights), and every training step runs only the adapter's layers
            (`alignx.logprobs.frozen_logps`). Exact; costs ~1.3 MB of RAM per pair at 500 tokens.
        prompt_grad (`bool`, defaults to `True`): backpropagate through the prompt's keys and
            values in the adapter's layers; ``False`` runs the prompt without autograd.
        save_dtype (`str`, defaults to `"float32"`): the saved adapter's weight dtype
            (`cast_adapter`); ``float16`` halves the file, for adapters shipped in a repository.
        reference (`str`, defaults to `"method-prompt"`): the prompt the reference model sees.
            ``method-prompt`` is standard DPO (the policy's own prompt). ``ica-prompt`` gives the
            reference the ICA prompt with the row's whole persona: the reference of the paper's
            alignment accuracy (§7.1), so a PBA policy is trained on the implicit reward that
            ``alignx eval`` measures. Needs prefix sharing and precomputed reference log-probs.
        profile_keep (`float`, defaults to 1): PBA profile dropout on the training rows
            (`alignx.learn.data.thin_profile`); validation rows show whole profiles.
        pair_batches (`bool`, defaults to `False`): batch each original row with its persona-swapped
            row (`alignx.learn.data.paired_order`, reshuffled every epoch).
        ref_cache (`str`, *optional*): a folder for the reference pass's per-row results (log-probs
            and, with the lower-layer cache, the states entering the adapter). A row is keyed by the
            base model's fingerprint (`model_fingerprint`), the capture layer and its exact token
            ids, so runs that share rows share the pass. Used by the pass alignx runs itself (the
            lower-layer cache or ``reference=ica-prompt``); ~1.3 MB per row at 500 tokens.
    """

    method: str = field(default="pba", metadata={"help": "ica or pba.", "choices": ["ica", "pba"]})
    data: str = field(default="", metadata={"help": "Records file (.json/.jsonl/.parquet) or parquet folder."})
    split: str | None = field(default=None, metadata={"help": "Split name in assets/splits; trains on its train side."})
    model: str = field(default="embedded", metadata={"help": "'embedded', a HF model id or a local folder."})
    precision: str = field(default="auto", metadata={"help": "auto, fp32, bf16 or nf4.",
                                                       "choices": ["auto", "fp32", "bf16", "nf4"]})
    prompt_style: str = field(default="auto", metadata={"help": "auto, chat, chat-train, official-train, official-eval."})
    augment: str = field(default="", metadata={"help": "Comma list: swap (persona-swapped, labels flipped), contrast, "
                                                        "history (a persona's own PAIR item as the target), "
                                                        "history_swap (those under a swapped persona, labels "
                                                        "flipped); name:fraction keeps that share (swap:0.5)."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    validation_per_persona: int = field(default=0, metadata={"help": "Validation records per persona from the train side."})
    validation_seed: int | None = field(default=None, metadata={
        "help": "Seed of the validation draw (default: the training --seed), so runs with different seeds can "
                "share one validation slice."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default=LORA_TARGETS, metadata={"help": "Comma list of module names, or all-linear."})
    lora_top_layers: int | None = field(default=None, metadata={"help": "LoRA only on the top N decoder layers (None: all)."})
    demo_prob: float = field(default=0.5, metadata={"help": "P(show demographics) in a history draw."})
    demo_only_prob: float = field(default=0.1, metadata={"help": "P(DEMO-only draw) when demographics exist."})
    threads: int | None = field(default=None, metadata={"help": "torch intra-op threads."})
    prefix_sharing: bool = field(default=True, metadata={
        "help": f"Run each pair's prompt once; chosen and rejected reuse its KV cache (loss types: "
                f"{', '.join(FAST_LOSSES)}; and alignx's drift, the squared mean log-ratio per token of the "
                f"pair, a length-neutral leash)."})
    cache_lower_layers: bool = field(default=True, metadata={
        "help": "With lora_top_layers and prefix sharing: keep the output of the layers below the adapter from "
                "the reference pass, so training steps run only the adapter's layers (exact)."})
    save_dtype: str = field(default="float32", metadata={
        "help": "dtype of the saved adapter weights: float32, float16 or bfloat16 (half the size).",
        "choices": ["float32", "float16", "bfloat16"]})
    reference: str = field(default="method-prompt", metadata={
        "help": "Reference prompt: method-prompt (standard DPO) or ica-prompt (the ICA prompt with the whole "
                "persona, the reference of the paper's alignment accuracy).",
        "choices": list(REFERENCES)})
    profile_keep: float = field(default=1.0, metadata={
        "help": "PBA profile dropout on the training rows: each row keeps a random share (drawn from "
                "[profile_keep, 1]) of its profile's labels; 1 shows whole profiles. Validation rows "
                "always show whole profiles."})
    pair_batches: bool = field(default=False, metadata={
        "help": "Put each original row and its persona-swapped row in the same batch (needs an even batch "
                "size); otherwise the sampler of --train_sampling_strategy."})
    ref_cache: str | None = field(default=None, metadata={
        "help": "A folder that keeps each row's reference log-probs and lower-layer states, so later runs on "
                "the same rows and model skip the reference pass (with the lower-layer cache or ica-prompt)."})
    distill_weight: float = field(default=0.0, metadata={
        "help": "Weight of the style-distillation term (0: off). Its teacher is the base model told the style of "
                "the user whose persona a row shows (the record's ground_truth_persona, as a system message; what "
                "else it reads: distill_context), contrasted with another user's style by distill_alpha; the term "
                "is the cross-entropy from the teacher's next-token distributions to the policy's, on every chosen "
                "and rejected token (other terms: distill_mode). Needs ground_truth_persona in the data, a chat "
                "template (distill_context task, not mode anchor) and the precomputed prefix-sharing pass."})
    distill_alpha: float = field(default=1.0, metadata={
        "help": "The teacher's contrast: log-probs (1 + alpha) x own style - alpha x other style, renormalised."})
    distill_topk: int = field(default=64, metadata={
        "help": "Teacher tokens kept per position (the distribution renormalised over them)."})
    distill_mode: str = field(default="dists", metadata={
        "help": "dists: the cross-entropy to the contrasted teacher's top-k next-token distributions. logratio: "
                "on the response's own tokens only, the squared gap between the policy's log-ratio to the reference "
                "and the teacher's shift over its prompt without a style, (1 + alpha) (own - none) - alpha (other - "
                "none): the part of the style that separates responses, without the shift a system message gives "
                "every token. anchor: the squared gap to the reference's own token log-probs (no teacher): "
                "a per-token leash that keeps unseen responses' likelihoods where the base model has them.",
        "choices": ["dists", "logratio", "anchor"]})
    distill_context: str = field(default="task", metadata={
        "help": "What the teacher reads after the style: task (the task alone, the template's default system "
                "message otherwise), policy (the row's own prompt, persona or profile included, with the style "
                "put before its system sentence; the teacher then differs from the reference by the style alone) "
                "or reference (the same on the reference prompt of reference ica-prompt: the ICA prompt with the "
                "whole persona, for PBA).",
        "choices": list(DISTILL_CONTEXTS)})
    sft_rows: str = field(default="", metadata={
        "help": "With an sft term in --loss_type: the row kinds whose chosen response it counts (comma list of "
                "original, swap, contrast, history, history_swap; empty: every row, as TRL). 'original' teaches "
                "the persona's own style without also raising the plain answers that the swap rows choose."})
    prompt_grad: bool = field(default=True, metadata={
        "help": "Backpropagate through the prompt's keys and values; false trains through the response "
                "tokens only (faster, an approximation)."})
    init_adapter: str | None = field(default=None, metadata={
        "help": "Start the LoRA weights from this adapter folder (safetensors; e.g. train PBA from an ICA "
                "adapter) instead of peft's initialisation. Its rank, alpha, target modules and layers must be "
                "the run's own."})


def make_parser(subparsers=None):
    """A `TrlParser` over (`AlignXTrainArguments`, `DPOConfig`); with ``--config recipe.yaml``."""
    from trl import DPOConfig, TrlParser

    types = (AlignXTrainArguments, DPOConfig)
    if subparsers is not None:
        return subparsers.add_parser("train", help="DPO-train an ICA or PBA adapter", dataclass_types=types)
    return TrlParser(types, prog="alignx train")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``alignx train`` on a plain argparse subparsers object (alignx/cli.py).

    Every argument is handed over to the TRL parser unchanged (so ``--help`` shows all options).
    """
    # prefix_chars="+": every "--flag" stays a plain string for the TRL parser to read.
    p = subparsers.add_parser("train", help="DPO-train an ICA or PBA LoRA adapter (TRL)", add_help=False,
                              prefix_chars="+", description="See `python -m alignx.learn.train --help`.")
    p.add_argument("train_args", nargs="*")
    p.set_defaults(func=lambda args: 0 if main(args.train_args) else 1)
    return p


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [ALIASES.get(a, a) for a in argv]
    argv = [ALIASES[a.split("=")[0]] + "=" + a.split("=", 1)[1] if "=" in a and a.split("=")[0] in ALIASES else a
            for a in argv]
    parser = make_parser()
    alignx_args, dpo_args, *rest = parser.parse_args_and_config(argv, return_remaining_strings=True)
    remaining = rest[0] if rest else []
    if remaining:  # launcher flags and typos are reported, not fatal
        print(f"alignx train: ignoring unknown arguments {remaining}", file=sys.stderr)
    if not alignx_args.data:
        parser.error("--data is required")
    return alignx_args, dpo_args, argv


def cast_adapter(folder: str | os.PathLike, dtype: str) -> Path:
    """Rewrite ``folder/adapter_model.safetensors`` with its floating-point tensors in ``dtype``
    (``float16``, ``bfloat16`` or ``float32``); peft casts them back to the model's dtype on load."""
    import torch
    from safetensors.torch import load_file, save_file

    target = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(dtype)
    if target is None:
        raise ValueError(f"unknown dtype {dtype!r}; valid: float32, float16, bfloat16")
    path = Path(folder) / "adapter_model.safetensors"
    tensors = load_file(str(path))
    save_file({k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}, str(path),
              metadata={"format": "pt"})
    return path


def file_sha256(path: str | os.PathLike) -> str:
    p = Path(path)
    files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def resolve_precision(precision: str, device: str) -> str:
    import torch

    if precision != "auto":
        return precision
    if device == "cuda":
        return "nf4"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native_bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
    return "bf16" if native_bf16 and torch.backends.mkldnn.is_available() else "fp32"


def load_model(args: AlignXTrainArguments, device: str):
    """(model, tokenizer, model_dir, precision) for training: fp32 / bf16 weights, or an nf4 base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignx.backbone import EMBEDDED, embedded_model_dir, get_quantization_config

    source = str(embedded_model_dir()) if args.model == EMBEDDED else args.model
    precision = resolve_precision(args.precision, device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict = {}
    if precision == "nf4":
        kwargs["quantization_config"] = get_quantization_config("nf4", device)
        kwargs["device_map"] = {"": 0 if device == "cuda" else "cpu"}  # TRL's get_kbit_device_map equivalent
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    return model, tokenizer, source, precision


def set_autocast(training_args, *, bf16: bool) -> None:
    """Turn bf16 autocast on or off after `DPOConfig` was built.

    ``TrainingArguments.__post_init__`` copies ``bf16`` into ``mixed_precision``, which is what the
    Accelerator reads, so both must change together.
    """
    training_args.bf16 = bf16
    if bf16:
        training_args.mixed_precision = "bf16"
    elif training_args.mixed_precision == "bf16":
        training_args.mixed_precision = "no"


def lora_config(args: AlignXTrainArguments, num_layers: int):
    from peft import LoraConfig

    targets = "all-linear" if args.lora_target_modules == "all-linear" else \
        [t.strip() for t in args.lora_target_modules.split(",") if t.strip()]
    layers = None
    if args.lora_top_layers:
        layers = list(range(max(0, num_layers - args.lora_top_layers), num_layers))
    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")


def load_init_adapter(model, path: str) -> dict:
    """Copy the LoRA weights of the adapter folder ``path`` into ``model``'s trainable adapter.

    The folder is checked as any adapter is (`alignx.backbone.check_adapter_dir`: safetensors only).
    Every LoRA weight of the model must be in the file with the same shape, and the file may hold no
    other: a rank, target module or layer that differs is an error, not a partial start.

    Returns:
        `dict`: ``path``, ``tensors`` (how many were copied) and the weights file's ``sha256``.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load

    from alignx.backbone import check_adapter_dir

    folder = check_adapter_dir(path)
    meta = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    own = model.peft_config["default"]
    for key in ("r", "lora_alpha"):
        if meta.get(key) != getattr(own, key):
            raise ValueError(f"--init_adapter {path}: its {key} is {meta.get(key)}, this run's is {getattr(own, key)}")
    data = (folder / "adapter_model.safetensors").read_bytes()  # read once: loaded and hashed
    weights = load(data)
    # peft saves the keys without the adapter's name (….lora_A.weight, not ….lora_A.default.weight)
    params = {k.replace(".default", ""): v for k, v in model.named_parameters() if "lora_" in k}
    missing, extra = sorted(params.keys() - weights.keys()), sorted(weights.keys() - params.keys())
    if missing or extra:
        raise ValueError(f"--init_adapter {path}: its LoRA weights are not this run's adapter: {len(missing)} of "
                         f"this run's are not in it {missing[:1]}, {len(extra)} of its are not in this run "
                         f"{extra[:1]} (compare lora_target_modules and lora_top_layers)")
    for k, v in weights.items():  # e.g. an adapter of another base model, with other hidden sizes
        if tuple(v.shape) != tuple(params[k].shape):
            raise ValueError(f"--init_adapter {path}: {k} has shape {tuple(v.shape)}, this run's is "
                             f"{tuple(params[k].shape)}")
    set_peft_model_state_dict(model, weights)  # the keys match exactly; copied into the run's own dtype
    return {"path": str(path), "tensors": len(weights), "sha256": hashlib.sha256(data).hexdigest()}


def prompt_style(args: AlignXTrainArguments, source: str) -> str:
    """The template of the training prompts: ``args.prompt_style``, or for ``auto`` the official
    Llama-3 training template on Llama-3 models and the backbone's own template otherwise."""
    if args.prompt_style != "auto":
        return args.prompt_style
    from alignx.backbone import resolve_template

    llama3 = "llama-3" in source.lower() or "alignxpert" in source.lower()
    return "official-train" if llama3 else resolve_template(args.model)


def build_rows(args: AlignXTrainArguments, tokenizer, style: str, seed: int):
    """(train rows, validation rows, info) from the records, the split's train side and the augmentations."""
    from alignx.learn.data import NEW_TARGETS, build_training_rows, parse_augment
    from alignx.learn.split import split_indices, validation_indices
    from alignx.schema import load_records

    records = load_records(args.data)
    train_idx = list(range(len(records)))
    heldout: list[int] = []
    if args.split:
        train_idx, heldout = split_indices(args.split, records)
    val_idx: list[int] = []
    if args.validation_per_persona:
        val_idx = validation_indices(records, train_idx, per_persona=args.validation_per_persona,
                                     seed=seed if args.validation_seed is None else args.validation_seed)
        held_back = set(val_idx)
        train_idx = [i for i in train_idx if i not in held_back]
    augment = [a.strip() for a in args.augment.split(",") if a.strip()]
    parsed = parse_augment(augment)  # a typo fails here, before any model work
    kw = dict(seed=seed, style=style, tokenizer=tokenizer, augment=augment, reference=args.reference,
              demo_prob=args.demo_prob, demo_only_prob=args.demo_only_prob)
    # no history target may touch what a record outside the training records asks about
    trained = set(train_idx)
    outside = frozenset(t for i, r in enumerate(records) if i not in trained for t in (r.prompt, r.chosen, r.rejected))
    rows = build_training_rows([records[i] for i in train_idx], args.method, indices=train_idx,
                               profile_keep=args.profile_keep, history_exclude=outside, **kw)
    if args.limit:
        rows = rows[: args.limit]
    # validation: every augmentation row (no fraction), so the score also measures reading the
    # persona; not the history targets, which are the training records' own
    val_kw = dict(kw, augment=[name for name, _ in parsed if name not in NEW_TARGETS])
    val_rows = build_training_rows([records[i] for i in val_idx], args.method, indices=val_idx, **val_kw) if val_idx else []
    info = {"n_records": len(records), "n_train_records": len(train_idx), "n_validation_records": len(val_idx),
            "n_heldout_records_excluded": len(heldout), "n_train_rows": len(rows), "n_validation_rows": len(val_rows),
            "augment": augment}
    return rows, val_rows, info


class PrefixSharingCollator:
    """Collates TRL-tokenized preference rows as token lists, for the prefix-sharing forward.

    TRL's collator concatenates ``prompt + chosen`` and ``prompt + rejected`` into two padded
    rows; here the prompt stays separate, so `alignx.logprobs` runs it once per pair. Truncation
    follows ``DPOConfig.max_length`` and ``truncation_mode``: ``keep_end`` drops prompt tokens
    from the left, ``keep_start`` cuts the responses.
    """

    def __init__(self, max_length: int | None = None, truncation_mode: str = "keep_end"):
        self.max_length = max_length
        self.truncation_mode = truncation_mode

    def _truncate(self, prompt: list[int], chosen: list[int], rejected: list[int]):
        if self.max_length is None:
            return prompt, chosen, rejected
        longest = max(len(chosen), len(rejected))
        over = len(prompt) + longest - self.max_length
        if over <= 0:
            return prompt, chosen, rejected
        if self.truncation_mode == "keep_end" and over < len(prompt):
            return prompt[over:], chosen, rejected
        room = max(1, self.max_length - len(prompt))
        return prompt, chosen[:room], rejected[:room]

    def truncate_prompt(self, prompt: list[int], chosen: list[int], rejected: list[int]) -> list[int]:
        """``prompt`` cut from its start (``truncation_mode="keep_end"``) to fit ``max_length``
        before the already-collated responses.

        Raises:
            ValueError: fitting it would cut the responses (a reference prompt must score the
                same response tokens as the policy), as ``keep_start`` or a too short
                ``max_length`` would.
        """
        p, c, r = self._truncate(prompt, chosen, rejected)
        if (c, r) != (chosen, rejected):
            raise ValueError(f"a reference prompt of {len(prompt)} tokens leaves no room for its responses within "
                             f"max_length={self.max_length}; raise max_length")
        return p

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        batch: dict = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
        for e in examples:
            p, c, r = self._truncate(list(e["prompt_ids"]), list(e["chosen_ids"]), list(e["rejected_ids"]))
            batch["prompt_ids"].append(p)
            batch["chosen_ids"].append(c)
            batch["rejected_ids"].append(r)
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in examples[0]:
                batch[key] = torch.tensor([float(e[key]) for e in examples])
        if "row_id" in examples[0]:
            batch["row_id"] = [int(e["row_id"]) for e in examples]
        if "sft_weight" in examples[0]:
            batch["sft_weight"] = torch.tensor([float(e["sft_weight"]) for e in examples])
        return batch


def preference_loss(loss_types, loss_weights, beta: float, chosen_logps, rejected_logps, ref_chosen, ref_rejected,
                    chosen_tokens, rejected_tokens, label_smoothing: float = 0.0, sft_weight=None):
    """The weighted sum of TRL `DPOTrainer` losses (same formulas, same names) from summed response
    log-probs, their reference values and the response token counts. ``"sft"`` is TRL's: the mean
    negative log-likelihood per chosen token over the batch; with ``sft_weight`` (one 0/1 value per
    row) only over the rows weighted 1, and 0 for a batch without any. ``"drift"`` is alignx's own
    length-neutral leash: the square of the pair's mean log-ratio per token,
    ((chosen_lr + rejected_lr) / (n_chosen + n_rejected))^2. It holds the likelihood that both
    responses share where the reference has it and leaves their difference, what DPO moves, free.
    Returns a scalar tensor.

    Raises:
        ValueError: a loss type outside `FAST_LOSSES` and `OWN_LOSSES`, or a weight count that does not match.
    """
    import torch
    import torch.nn.functional as F

    loss_types = list(loss_types)
    weights = list(loss_weights) if loss_weights else [1.0] * len(loss_types)
    if len(weights) != len(loss_types):
        raise ValueError(f"{len(weights)} loss_weights for {len(loss_types)} loss types {loss_types}")
    chosen_lr, rejected_lr = chosen_logps - ref_chosen, rejected_logps - ref_rejected
    delta = chosen_lr - rejected_lr
    n_c = chosen_tokens.to(chosen_logps).clamp(min=1.0)
    n_r = rejected_tokens.to(chosen_logps).clamp(min=1.0)
    total = 0.0
    for kind, weight in zip(loss_types, weights):
        if kind == "sigmoid":
            per = -F.logsigmoid(beta * delta)
        elif kind == "hinge":
            per = torch.relu(1 - beta * delta)
        elif kind == "ipo":  # per-token log-ratios, as TRL (and the IPO authors) normalise
            per = (chosen_lr / n_c - rejected_lr / n_r - 1 / (2 * beta)) ** 2
        elif kind == "robust":
            per = (-(1 - label_smoothing) * F.logsigmoid(beta * delta)
                   + label_smoothing * F.logsigmoid(-beta * delta)) / (1 - 2 * label_smoothing)
        elif kind == "nca_pair":
            per = (-F.logsigmoid(beta * chosen_lr) - 0.5 * F.logsigmoid(-beta * chosen_lr)
                   - 0.5 * F.logsigmoid(-beta * rejected_lr))
        elif kind == "bco_pair":
            per = -F.logsigmoid(beta * chosen_lr) - F.logsigmoid(-beta * rejected_lr)
        elif kind == "apo_zero":
            per = 1 - torch.sigmoid(beta * chosen_lr) + torch.sigmoid(beta * rejected_lr)
        elif kind == "apo_down":
            per = torch.sigmoid(beta * chosen_lr) + 1 - torch.sigmoid(beta * delta)
        elif kind == "sft":
            w = torch.ones_like(chosen_logps) if sft_weight is None else sft_weight.to(chosen_logps)
            per = (-(w * chosen_logps).sum() / (w * n_c).sum().clamp(min=1.0)).expand(len(chosen_logps))
        elif kind == "sigmoid_norm":
            per = -F.logsigmoid(beta * (chosen_lr / n_c - rejected_lr / n_r))
        elif kind == "drift":
            per = ((chosen_lr + rejected_lr) / (n_c + n_r)) ** 2
        else:
            raise ValueError(f"loss_type {kind!r} is not one the prefix-sharing forward implements "
                             f"({', '.join(FAST_LOSSES + OWN_LOSSES)})")
        total = total + per.mean() * weight
    return total


def prefix_sharing_supported(training_args) -> str | None:
    """Why the prefix-sharing forward cannot run with these `DPOConfig` settings (None: it can)."""
    if other := [t for t in training_args.loss_type if t not in FAST_LOSSES + OWN_LOSSES]:
        return f"loss_type {other} (prefix sharing implements {', '.join(FAST_LOSSES + OWN_LOSSES)})"
    if getattr(training_args, "use_weighting", False):
        return "use_weighting"
    if getattr(training_args, "ld_alpha", None) is not None:
        return "ld_alpha is set"
    if getattr(training_args, "f_divergence_type", "reverse_kl") not in ("reverse_kl", "FDivergenceType.REVERSE_KL"):
        f_div = str(training_args.f_divergence_type)
        if "reverse" not in f_div.lower():
            return f"f_divergence_type {f_div}"
    if getattr(training_args, "use_liger_kernel", False):
        return "use_liger_kernel"
    return None


ROW_KINDS = ("original", "swap", "contrast", "history", "history_swap")  # alignx.learn.data's kinds
TEACHER_COLUMNS = ("teacher_prompt", "teacher_other", "teacher_none")  # `teacher_prompts`, in order
TOKEN_MODES = ("logratio", "anchor")  # distill modes whose term is on the response's own token log-probs


def sft_rows_kinds(args: AlignXTrainArguments, training_args, prefix_sharing: bool) -> list[str] | None:
    """The row kinds of ``--sft_rows`` (None: every row).

    Raises:
        ValueError: an unknown kind, no ``sft`` in ``loss_type``, or TRL's forward (which would ignore it).
    """
    kinds = [k.strip() for k in args.sft_rows.split(",") if k.strip()]
    if not kinds:
        return None
    if unknown := [k for k in kinds if k not in ROW_KINDS]:
        raise ValueError(f"sft_rows: unknown row kind(s) {', '.join(unknown)}; valid: {', '.join(ROW_KINDS)}")
    if "sft" not in training_args.loss_type:
        raise ValueError("sft_rows selects the rows of the sft loss, but --loss_type has no sft")
    if not prefix_sharing:
        raise ValueError(f"sft_rows needs the prefix-sharing forward (prefix_sharing true, loss types among "
                         f"{', '.join(FAST_LOSSES)})")
    return kinds


def distill_unsupported(args: AlignXTrainArguments, training_args, prefix_sharing: bool) -> str | None:
    """Why ``distill_weight`` cannot run with these settings (None: it can, or it is off)."""
    if not args.distill_weight:
        return None
    if args.distill_weight < 0 or args.distill_alpha < 0 or args.distill_topk < 1:
        return "distill_weight and distill_alpha must be >= 0 and distill_topk >= 1"
    if not training_args.precompute_ref_log_probs:
        return "the teacher runs in the precomputed reference pass; set precompute_ref_log_probs true"
    if not prefix_sharing:
        return f"it needs the prefix-sharing forward (prefix_sharing true, loss types among {', '.join(FAST_LOSSES)})"
    if args.distill_context == "reference" and args.reference != "ica-prompt":
        return "distill_context reference puts the style in the reference prompt; set reference ica-prompt"
    return None


def teacher_prompts(rows: list[dict], tokenizer, seed: int, *, context: str = "task",
                    template: str | None = None) -> list[tuple[str, str, str]]:
    """Per row, the distillation teacher's three prompts: with the style of the user whose persona the
    row shows, with another user's style (seeded choice), and without a style.

    ``context="task"``: the row's task after a system message with the style (the third prompt: the
    task alone, the template's default system message). ``context="policy"``: the row's own prompt,
    persona or profile included, with the style put before its system sentence (that of ``template``,
    an `alignx.prompts` template name, for the row's method); the third prompt is the row's prompt.
    ``context="reference"``: the same on the row's ``ref_prompt`` (``reference="ica-prompt"``: the
    ICA prompt with the whole persona), so a PBA student learns from a teacher that reads the persona.

    Raises:
        ValueError: an unknown context, a row without a style (no ``ground_truth_persona``), fewer than
            two styles, (``task``) a tokenizer without a chat template, (``policy``, ``reference``) a
            prompt without its system sentence, or (``reference``) a row without ``ref_prompt``.
    """
    if context not in DISTILL_CONTEXTS:
        raise ValueError(f"unknown distill context {context!r}; choose one of {', '.join(DISTILL_CONTEXTS)}")
    if context == "task" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("distill_context task needs a backbone with a chat template (the style is a system message)")
    if missing := sum(1 for r in rows if not r.get("style")):
        raise ValueError(f"distill_weight needs every record's ground_truth_persona; {missing} rows have none")
    styles = sorted({r["style"] for r in rows})
    if len(styles) < 2:
        raise ValueError("distill_weight needs at least two ground_truth_persona styles to contrast")
    rng = random.Random(seed)
    others = [rng.choice([s for s in styles if s != r["style"]]) for r in rows]
    if context == "task":
        text = lambda style, task: tokenizer.apply_chat_template(  # noqa: E731
            ([{"role": "system", "content": style}] if style else []) + [{"role": "user", "content": task}],
            tokenize=False, add_generation_prompt=True)
        return [(text(r["style"], r["task"]), text(o, r["task"]), text(None, r["task"])) for r, o in zip(rows, others)]
    from alignx.prompts import get_template

    wording = get_template(template or "chat").wording
    column = "prompt" if context == "policy" else "ref_prompt"
    out = []
    for i, (r, o) in enumerate(zip(rows, others)):
        if column not in r:
            raise ValueError(f"row {i} has no {column}: distill_context reference needs reference ica-prompt")
        prompt = r[column]
        sentence = wording.pba_system if context == "policy" and r["method"] == "pba" else wording.ica_system
        if sentence not in prompt:
            raise ValueError(f"row {i}: its {column} does not hold the {template!r} system sentence {sentence!r}, "
                             f"so the style has nowhere to go (distill_context {context})")
        told = lambda style: prompt.replace(sentence, f"{style} {sentence}", 1)  # noqa: E731
        out.append((told(r["style"]), told(o), prompt))
    return out


def reference_prompt_unsupported(args: AlignXTrainArguments, training_args, prefix_sharing: bool) -> str | None:
    """Why ``reference="ica-prompt"`` cannot run with these settings (None: it can)."""
    if args.reference == "method-prompt":
        return None
    if not training_args.precompute_ref_log_probs:
        return "it is computed in the precomputed reference pass; set precompute_ref_log_probs true"
    if not prefix_sharing:
        return f"it needs the prefix-sharing forward (prefix_sharing true, loss types among {', '.join(FAST_LOSSES)})"
    return None


def lower_layer_cache_unsupported(args: AlignXTrainArguments, training_args, prefix_sharing: bool,
                                  num_layers: int) -> str | None:
    """Why the lower-layer cache cannot run with these settings (None: it can)."""
    if not args.lora_top_layers or args.lora_top_layers >= num_layers:
        return "the adapter covers every layer (set lora_top_layers)"
    if not prefix_sharing:
        return "it needs the prefix-sharing forward"
    if not training_args.precompute_ref_log_probs:
        return "it is filled by the precomputed reference pass (precompute_ref_log_probs)"
    if getattr(training_args, "deepspeed", None) or getattr(training_args, "fsdp", None):
        return "sharded training (DeepSpeed / FSDP)"
    return None


def model_fingerprint(model) -> str:
    """A short id of a model's base weights (LoRA weights excluded): every parameter's name, shape,
    dtype and first and last 256 values. Cheap on an 8B model, and it changes with the checkpoint,
    the precision or the quantization."""
    import torch

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        flat = p.detach().reshape(-1)
        sample = torch.cat([flat[:256], flat[-256:]]).float().cpu()
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def _trainer_class():
    import torch
    from trl import DPOTrainer

    from alignx.logprobs import Frozen, Group, frozen_logps, prefix_shared_logps

    class PairedSampler(torch.utils.data.Sampler):
        """`alignx.learn.data.paired_order`, with a new seeded shuffle every epoch."""

        def __init__(self, keys, batch_size: int, seed: int):
            self.keys, self.batch_size, self.seed, self.epoch = list(keys), batch_size, seed, 0

        def __len__(self):
            return len(self.keys)

        def __iter__(self):
            order = paired_order(self.keys, self.batch_size, random.Random(f"{self.seed}:{self.epoch}"))
            self.epoch += 1
            return iter(order)

    class AlignXDPOTrainer(DPOTrainer):
        """`DPOTrainer` with a prefix-sharing forward and a ``length`` column for length grouping.

        With ``prefix_sharing=True`` (and a `PrefixSharingCollator`), each pair's prompt runs once
        and chosen and rejected continue from its KV cache, in the policy forward and in the
        reference log-prob precompute. The loss is TRL's (`preference_loss`: sigmoid DPO and the
        other types in `FAST_LOSSES`, weighted by ``loss_weights``), plus alignx's `OWN_LOSSES`.
        The logged metrics are TRL's (``rewards/chosen``, ``rewards/rejected``,
        ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``, ``logps/rejected``) and
        ``logratio/per_token`` (the pair's mean log-ratio per token), averaged over rows (TRL
        averages over batches).
        """

        def __init__(self, *args, prefix_sharing: bool = False, frozen_start: int | None = None,
                     prompt_grad: bool = True, pair_batches: bool = False, ref_cache: str | None = None,
                     distill: dict | None = None, **kwargs):
            self.pair_batches = pair_batches
            self.distill = distill  # {"weight", "alpha", "topk", "mode"} or None
            self._teacher: dict[int, list] = {}  # row_id -> the distillation targets of chosen, rejected
            self._token_memo: dict[str, object] = {}  # `_base_token_logps` key -> per-token log-probs
            self._rows_seen = 0
            self.ref_cache = ref_cache
            self._fingerprint: str | None = None
            self.prefix_sharing = prefix_sharing
            self.frozen_start = frozen_start if prefix_sharing else None
            self.prompt_grad = prompt_grad
            self._frozen: dict[int, object] = {}  # row_id -> alignx.logprobs.Frozen
            super().__init__(*args, **kwargs)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            for col in ("length", "row_id", "pair_key", "sft_weight"):  # kept past remove_unused_columns
                if col not in self._signature_columns:
                    self._signature_columns.append(col)

        def _get_train_sampler(self, train_dataset=None):
            if not self.pair_batches:
                return super()._get_train_sampler(train_dataset)
            keys = (self.train_dataset if train_dataset is None else train_dataset)["pair_key"]
            return PairedSampler(keys, self.args.per_device_train_batch_size, self.args.seed)

        def _groups(self, inputs):
            return [Group(p, [c, r]) for p, c, r in
                    zip(inputs["prompt_ids"], inputs["chosen_ids"], inputs["rejected_ids"])]

        @property
        def _pad(self):
            return self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0

        def _pair_logps(self, model, inputs, dists: bool = False):
            """(chosen, rejected) summed log-probs; with ``dists``, also each response's distillation
            input: its next-token distributions (mode ``dists``) or its token log-probs (`TOKEN_MODES`)."""
            groups = self._groups(inputs)
            kind = {"tokens": True} if dists and self.distill.get("mode") in TOKEN_MODES else {"dists": dists}
            if self.frozen_start is not None and "row_id" in inputs:
                frozen = [self._frozen[i] for i in inputs["row_id"]]
                out = frozen_logps(model, groups, frozen, pad_id=self._pad, start=self.frozen_start,
                                   prompt_grad=self.prompt_grad, **kind)
            else:
                out = prefix_shared_logps(model, groups, pad_id=self._pad, **kind)
            if dists:
                logps, d = out
                return logps[0::2], logps[1::2], d
            return out[0::2], out[1::2]

        def _teacher_targets(self, rows, inputs, ref_groups=None, frozen=None) -> list[list]:
            """Per row, for chosen and rejected, the distillation targets (``distill["mode"]``).

            ``dists``: the top-k token ids and renormalised log-probs of the teacher,
            ``(1 + alpha) log p(. | own style) - alpha log p(. | other style)`` at each response
            position (the base model told the style: `teacher_prompts`), kept in ``ref_cache`` when set.
            ``logratio``: per response token, the log-prob the policy should give it: the reference's
            plus the teacher's shift over its prompt without a style, ``(1 + alpha) (own - none) - alpha
            (other - none)``, capped at 0. ``anchor``: the reference's own token log-probs. The reference's
            values come from ``ref_groups`` (a separate reference prompt), the ``frozen`` states or
            the policy prompt, adapter off.
            """
            alpha, mode = self.distill["alpha"], self.distill.get("mode", "dists")
            pairs = lambda values: [values[2 * i:2 * i + 2] for i in range(len(rows))]  # noqa: E731
            teacher = lambda col: [Group(list(self._tokenizer(text=row[col])["input_ids"]), [c, r])  # noqa: E731
                                   for row, c, r in zip(rows, inputs["chosen_ids"], inputs["rejected_ids"])]
            if mode in TOKEN_MODES:
                goals = self._base_token_logps(ref_groups or self._groups(inputs), None if ref_groups else frozen)
                if mode == "logratio":
                    own, other, none = (self._base_token_logps(teacher(col)) for col in TEACHER_COLUMNS)
                    goals = [(r + (1 + alpha) * (o - n) - alpha * (t - n)).clamp(max=0.0)
                             for r, o, t, n in zip(goals, own, other, none)]
                return pairs(goals)
            own_groups, other_groups = teacher(TEACHER_COLUMNS[0]), teacher(TEACHER_COLUMNS[1])
            ids = lambda x: list(map(int, x))  # noqa: E731
            keys = [self._cache_key("dists", alpha, self.distill["topk"], ids(o.prompt), ids(t.prompt),
                                    [ids(r) for r in o.responses])
                    for o, t in zip(own_groups, other_groups)] if self.ref_cache else [None] * len(rows)
            found = {j: hit for j, k in enumerate(keys) if k is not None and (hit := self._ref_cache_load(k)) is not None}
            todo = [j for j in range(len(rows)) if j not in found]  # only the rows the cache misses
            if todo:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with torch.no_grad(), unwrapped.disable_adapter(), self.accelerator.autocast():
                    own, other = (prefix_shared_logps(self.model, [groups[j] for j in todo], pad_id=self._pad,
                                                      dists=True)[1] for groups in (own_groups, other_groups))
                    for n, (o, t) in enumerate(zip(own, other)):  # chosen and rejected of each row, in turn
                        z = torch.log_softmax((1 + alpha) * o.float() - alpha * t.float(), dim=-1)
                        top = z.topk(min(self.distill["topk"], z.shape[-1]), dim=-1)
                        j = todo[n // 2]
                        found.setdefault(j, []).append((top.indices.to(torch.int32).cpu(),
                                                        torch.log_softmax(top.values, dim=-1).cpu()))
                for j in todo:
                    if keys[j] is not None:
                        self._ref_cache_write(keys[j], found[j])
            return [found[j] for j in range(len(rows))]

        def _cache_key(self, *parts) -> str:
            """A `ref_cache` key: the base model's fingerprint, the autocast mode and ``parts`` (JSON-able:
            settings and token id lists), hashed."""
            if self._fingerprint is None:
                self._fingerprint = model_fingerprint(self.accelerator.unwrap_model(self.model))
            return hashlib.sha256(json.dumps([self._fingerprint, self.accelerator.mixed_precision, *parts]).encode()
                                  ).hexdigest()

        def _base_token_logps(self, groups, frozen=None) -> list:
            """The base model's per-token log-probs (float32, CPU) of every response of ``groups``, in
            order, adapter off; from the ``frozen`` states when given. Each distinct (prompt, response)
            is computed once per run (teacher prompts repeat across a task's rows) and, with
            ``ref_cache``, kept on disk under a key like the reference entries'."""
            keys = [[self._cache_key("tokens", list(map(int, g.prompt)), list(map(int, r))) for r in g.responses]
                    for g in groups]
            for k in {k for ks in keys for k in ks} - self._token_memo.keys():
                if self.ref_cache and (hit := self._ref_cache_load(k)) is not None:
                    self._token_memo[k] = hit
            todo = [j for j, ks in enumerate(keys) if any(k not in self._token_memo for k in ks)]
            todo = list({tuple(keys[j]): j for j in todo}.values())  # a repeated group runs once
            if todo:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with torch.no_grad(), unwrapped.disable_adapter(), self.accelerator.autocast():
                    if frozen is not None:
                        values = frozen_logps(self.model, [groups[j] for j in todo], [frozen[j] for j in todo],
                                              pad_id=self._pad, start=self.frozen_start, tokens=True)[1]
                    else:
                        values = prefix_shared_logps(self.model, [groups[j] for j in todo], pad_id=self._pad,
                                                     tokens=True)[1]
                for k, v in zip((k for j in todo for k in keys[j]), values):
                    self._token_memo[k] = v = v.detach().float().cpu()
                    if self.ref_cache:
                        self._ref_cache_write(k, v)
            return [self._token_memo[k] for ks in keys for k in ks]

        def _distill_loss(self, dists, row_ids):
            """Per response token, the mean cross-entropy from the stored teacher targets to ``dists``
            (mode ``dists``), or the mean squared gap between the policy's token log-probs (``dists``
            holds those) and their stored goals (modes ``logratio`` and ``anchor``)."""
            total, tokens = 0.0, 0
            if self.distill.get("mode") in TOKEN_MODES:
                for j, lp in enumerate(dists):
                    goal = self._teacher[row_ids[j // 2]][j % 2].to(lp.device)
                    n = min(lp.shape[0], goal.shape[0])
                    total = total + ((lp[:n] - goal[:n]) ** 2).sum()
                    tokens += n
                return total / max(tokens, 1)
            for j, d in enumerate(dists):  # chosen and rejected of each row, in turn
                idx, logq = self._teacher[row_ids[j // 2]][j % 2]
                n = min(d.shape[0], idx.shape[0])
                picked = d[:n].gather(-1, idx[:n].to(d.device, torch.long))
                total = total - (logq[:n].to(d.device).exp() * picked).sum()
                tokens += n
            return total / max(tokens, 1)

        def _ref_groups(self, rows, inputs):
            """Reference groups from the rows' own ``ref_prompt`` texts and the collated responses."""
            groups = []
            for row, c, r in zip(rows, inputs["chosen_ids"], inputs["rejected_ids"]):
                ids = self._tokenizer(text=row["ref_prompt"])["input_ids"]  # as TRL tokenizes prompts
                groups.append(Group(self.data_collator.truncate_prompt(list(ids), c, r), [c, r]))
            return groups

        def _ref_cache_keys(self, inputs, ref_groups) -> list[str]:
            """One key per row: the base model's fingerprint, the autocast mode, the capture layer and
            the exact token ids the reference pass scores (after truncation), so a changed row or
            model misses."""
            if self._fingerprint is None:
                self._fingerprint = model_fingerprint(self.accelerator.unwrap_model(self.model))
            refs = [g.prompt for g in ref_groups] if ref_groups else [None] * len(inputs["prompt_ids"])
            return [hashlib.sha256(json.dumps([self._fingerprint, self.accelerator.mixed_precision,
                                               self.frozen_start, list(map(int, p)),
                                               list(map(int, c)), list(map(int, r)),
                                               None if q is None else list(map(int, q))]).encode()).hexdigest()
                    for p, c, r, q in zip(inputs["prompt_ids"], inputs["chosen_ids"], inputs["rejected_ids"], refs)]

        def _ref_cache_path(self, key: str) -> Path:
            return Path(self.ref_cache) / key[:2] / f"{key}.pt"

        def _ref_cache_load(self, key: str):
            path = self._ref_cache_path(key)
            return torch.load(path, weights_only=True) if path.exists() else None

        def _ref_cache_save(self, key: str, chosen: float, rejected: float, frozen) -> None:
            entry = {"chosen": chosen, "rejected": rejected}
            if frozen is not None:
                entry.update(prompt=frozen.prompt.detach().cpu(), responses=[t.detach().cpu() for t in frozen.responses])
            self._ref_cache_write(key, entry)

        def _ref_cache_write(self, key: str, entry) -> None:
            path = self._ref_cache_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two runs filling one cache do not collide
            torch.save(entry, tmp)
            tmp.replace(path)  # a killed run never leaves a half-written entry

        def _precompute_ref_logps(self, dataset, name, batch_size):
            """The reference pass. With ``frozen_start`` it also keeps each row's states entering the
            first adapter layer; with a ``ref_prompt`` column the reference scores the responses after
            that prompt (and the policy prompt runs once more, only for those states)."""
            separate_ref = "ref_prompt" in dataset.column_names
            if self.frozen_start is None and not separate_ref and not self.distill:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            from tqdm.auto import tqdm

            if self.frozen_start is not None or self.distill:
                first = self._rows_seen  # train and eval rows get distinct ids
                self._rows_seen += len(dataset)
                dataset = dataset.add_column("row_id", list(range(first, first + len(dataset))))
            unwrapped = self.accelerator.unwrap_model(self.model)
            chosen, rejected = [], []
            for i in tqdm(range(0, len(dataset), batch_size), desc=f"Reference pass for {name} rows",
                          disable=bool(os.environ.get("TQDM_DISABLE", ""))):
                rows = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
                inputs = self.data_collator(rows)
                ref_groups = self._ref_groups(rows, inputs) if separate_ref else None
                keys = self._ref_cache_keys(inputs, ref_groups) if self.ref_cache else None
                hits = [self._ref_cache_load(k) for k in keys] if keys else [None] * len(rows)
                todo = [j for j, h in enumerate(hits) if h is None]  # only the rows the cache misses
                pairs = [(h["chosen"], h["rejected"]) if h else None for h in hits]
                frozen = [Frozen(h["prompt"], h["responses"]) if h and "prompt" in h else None for h in hits]
                if todo:
                    groups = self._groups(inputs)
                    with torch.no_grad(), unwrapped.disable_adapter(), self.accelerator.autocast():
                        if self.frozen_start is not None:
                            logps, new_frozen = prefix_shared_logps(self.model, [groups[j] for j in todo],
                                                                    pad_id=self._pad, capture_layer=self.frozen_start)
                            for j, f in zip(todo, new_frozen):
                                frozen[j] = f
                        elif not ref_groups:  # the teacher alone brought the pass here
                            logps = prefix_shared_logps(self.model, [groups[j] for j in todo], pad_id=self._pad)
                        if ref_groups:
                            logps = prefix_shared_logps(self.model, [ref_groups[j] for j in todo], pad_id=self._pad)
                    for j, c, r in zip(todo, logps[0::2].tolist(), logps[1::2].tolist()):
                        pairs[j] = (c, r)
                        if keys:
                            self._ref_cache_save(keys[j], c, r, frozen[j])
                logps = torch.tensor([x for pair in pairs for x in pair])
                if self.frozen_start is not None:
                    for row_id, f in zip(inputs["row_id"], frozen):
                        self._frozen[row_id] = f
                if self.distill:
                    targets = self._teacher_targets(rows, inputs, ref_groups,
                                                    frozen if self.frozen_start is not None else None)
                    for row_id, pair in zip(inputs["row_id"], targets):
                        self._teacher[row_id] = pair
                chosen += logps[0::2].tolist()
                rejected += logps[1::2].tolist()
            return dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)

        def compute_ref_log_probs(self, model, inputs):
            if not self.prefix_sharing:
                return super().compute_ref_log_probs(model, inputs)
            unwrapped = self.accelerator.unwrap_model(self.model)
            with torch.no_grad(), unwrapped.disable_adapter(), self.accelerator.autocast():
                return self._pair_logps(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            if not self.prefix_sharing:
                return super()._compute_loss(model, inputs, return_outputs)
            mode = "train" if self.model.training else "eval"
            distill = self.distill and "row_id" in inputs
            if distill:
                chosen_logps, rejected_logps, dists = self._pair_logps(model, inputs, dists=True)
            else:
                chosen_logps, rejected_logps = self._pair_logps(model, inputs)
            if self.precompute_ref_logps:
                device = chosen_logps.device
                ref_chosen = inputs["ref_chosen_logps"].to(device)
                ref_rejected = inputs["ref_rejected_logps"].to(device)
            else:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(model, inputs)
            chosen_logratios = chosen_logps - ref_chosen
            rejected_logratios = rejected_logps - ref_rejected
            count = lambda key: torch.tensor([len(x) for x in inputs[key]], device=chosen_logps.device)
            loss = preference_loss(self.args.loss_type, self.args.loss_weights, self.beta, chosen_logps,
                                   rejected_logps, ref_chosen, ref_rejected, count("chosen_ids"),
                                   count("rejected_ids"), self.args.label_smoothing, inputs.get("sft_weight"))
            if distill:
                term = self._distill_loss(dists, inputs["row_id"])
                loss = loss + self.distill["weight"] * term
                name = "distill/ce" if self.distill.get("mode", "dists") == "dists" else "distill/mse"
                self._metrics[mode][name].append(float(term.detach()))
            chosen_rewards = self.beta * chosen_logratios.detach()
            rejected_rewards = self.beta * rejected_logratios.detach()
            # one value per row, not per batch: TRL's `log` averages the list, so a short last batch
            # (44 validation rows = 5 x 8 + 4) does not weigh its rows double
            gather = self.accelerator.gather
            metrics = self._metrics[mode]
            metrics["rewards/chosen"].extend(gather(chosen_rewards).tolist())
            metrics["rewards/rejected"].extend(gather(rejected_rewards).tolist())
            metrics["rewards/accuracies"].extend(gather((chosen_rewards > rejected_rewards).float()).tolist())
            metrics["rewards/margins"].extend(gather(chosen_rewards - rejected_rewards).tolist())
            # the pair's mean log-ratio per token: the likelihood shift both responses share (term "drift")
            n_tokens = (count("chosen_ids") + count("rejected_ids")).clamp(min=1)
            metrics["logratio/per_token"].extend(
                gather((chosen_logratios + rejected_logratios).detach() / n_tokens).tolist())
            metrics["logps/chosen"].extend(gather(chosen_logps.detach()).tolist())
            metrics["logps/rejected"].extend(gather(rejected_logps.detach()).tolist())
            return (loss, {}) if return_outputs else loss

    return AlignXDPOTrainer


def _add_lengths(dataset):
    if dataset is None or "length" in dataset.column_names:
        return dataset
    return dataset.map(lambda e: {"length": len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))})


def build_trainer(args: AlignXTrainArguments, training_args):
    """Load the model, format the data and build the (length-grouping) `DPOTrainer`.

    Returns:
        (trainer, info): ``info`` has the model source, precision, prompt style and data counts.
    """
    from datasets import Dataset

    from alignx.backbone import resolve_device

    prefix_sharing = args.prefix_sharing
    if prefix_sharing and (why := prefix_sharing_supported(training_args)):
        print(f"alignx train: prefix sharing off: {why}", file=sys.stderr)
        prefix_sharing = False
    own = [t for t in training_args.loss_type if t in OWN_LOSSES]
    if own and not prefix_sharing:
        raise ValueError(f"loss_type {', '.join(own)} needs the prefix-sharing forward (prefix_sharing true, "
                         f"loss types among {', '.join(FAST_LOSSES + OWN_LOSSES)}); TRL's forward has no such loss")
    if why := reference_prompt_unsupported(args, training_args, prefix_sharing):  # before any model work
        raise ValueError(f"reference={args.reference!r}: {why}")
    sft_kinds = sft_rows_kinds(args, training_args, prefix_sharing)
    if why := distill_unsupported(args, training_args, prefix_sharing):
        raise ValueError(f"distill_weight: {why}")
    if args.pair_batches and training_args.per_device_train_batch_size % 2:
        raise ValueError("pair_batches needs an even per_device_train_batch_size, got "
                         f"{training_args.per_device_train_batch_size}")
    device = resolve_device("auto")
    model, tokenizer, source, precision = load_model(args, device)
    style = prompt_style(args, source)
    rows, val_rows, info = build_rows(args, tokenizer, style, training_args.seed)
    keep = ("prompt", "chosen", "rejected", *(("ref_prompt",) if args.reference == "ica-prompt" else ()))
    teacher = (teacher_prompts(rows + val_rows, tokenizer, training_args.seed, context=args.distill_context,
                               template=style)
               if args.distill_weight and args.distill_mode != "anchor" else None)

    def dataset(part: list[dict], start: int):
        ds = Dataset.from_list([{k: r[k] for k in keep} for r in part])
        if sft_kinds:
            ds = ds.add_column("sft_weight", [float(r["kind"] in sft_kinds) for r in part])
        if teacher:
            for col, texts in zip(TEACHER_COLUMNS, zip(*teacher[start:start + len(part)])):
                ds = ds.add_column(col, list(texts))
        return ds

    train_ds = dataset(rows, 0)
    if args.pair_batches:
        keys = pair_keys(rows)
        if len(set(keys)) == len(keys):
            print("alignx train: --pair_batches: no original row has its swap row here (--augment swap adds "
                  "them), so every batch is random pairs", file=sys.stderr)
        train_ds = train_ds.add_column("pair_key", keys)
    eval_ds = dataset(val_rows, len(rows)) if val_rows else None
    if eval_ds is None and training_args.eval_strategy != "no":
        training_args.eval_strategy = "no"
    if precision == "bf16" and device == "cpu":
        set_autocast(training_args, bf16=True)  # autocast for the fp32 LoRA weights on the bf16 base
    if precision == "fp32":
        set_autocast(training_args, bf16=False)  # bf16 autocast without AMX / AVX512-BF16 is emulated: ~7x slower
    peft_config = lora_config(args, model.config.num_hidden_layers)
    collator = PrefixSharingCollator(training_args.max_length, training_args.truncation_mode) if prefix_sharing else None
    frozen_start = None
    if args.cache_lower_layers:
        if why := lower_layer_cache_unsupported(args, training_args, prefix_sharing, model.config.num_hidden_layers):
            print(f"alignx train: lower-layer cache off: {why}", file=sys.stderr)
        else:
            frozen_start = model.config.num_hidden_layers - args.lora_top_layers
    trainer = _trainer_class()(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tokenizer, peft_config=peft_config, data_collator=collator,
                               prefix_sharing=prefix_sharing, frozen_start=frozen_start,
                               prompt_grad=args.prompt_grad, pair_batches=args.pair_batches,
                               ref_cache=args.ref_cache,
                               distill={"weight": args.distill_weight, "alpha": args.distill_alpha,
                                        "topk": args.distill_topk, "mode": args.distill_mode}
                               if args.distill_weight else None)
    if args.init_adapter:
        info["init_adapter"] = load_init_adapter(trainer.model, args.init_adapter)
    trainer.train_dataset = _add_lengths(trainer.train_dataset)
    trainer.eval_dataset = _add_lengths(trainer.eval_dataset)  # length grouping samples eval batches too
    info.update(model_source=source, precision=precision, prompt_style=style, device=device,
                prefix_sharing=prefix_sharing, frozen_layers=frozen_start or 0)
    return trainer, info


def main(argv=None, *, args: AlignXTrainArguments | None = None, training_args=None) -> dict:
    """Train one adapter. Pass ``argv`` (CLI strings) or already-built ``args`` + ``training_args``.

    Returns:
        The `train_log.json` dict.
    """
    import torch

    command = ["python", "-m", "alignx.learn.train", *(argv or [])]
    if args is None:
        args, training_args, argv = parse_args(argv)
        command = ["python", "-m", "alignx.learn.train", *argv]
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    trainer, info = build_trainer(args, training_args)
    source, precision, style, device, seed = (info["model_source"], info["precision"], info["prompt_style"],
                                              info["device"], training_args.seed)
    eval_ds = trainer.eval_dataset
    t_train = time.time()
    result = trainer.train()
    train_seconds = time.time() - t_train
    metrics = {}
    if eval_ds is not None:
        metrics = trainer.evaluate()
    out = Path(training_args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    had_readme = (out / "README.md").exists()
    trainer.model.save_pretrained(out, safe_serialization=True)
    if args.save_dtype != "float32":
        cast_adapter(out, args.save_dtype)
    if not had_readme:  # peft writes a boilerplate model card; the run is described by train_log.json
        (out / "README.md").unlink(missing_ok=True)
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    last = train_logs[-1] if train_logs else {}
    log = {
        "command": " ".join(command),
        "method": args.method, "data": str(args.data), "data_sha256": file_sha256(args.data), "split": args.split,
        "model": args.model, "model_source": source, "precision": precision, "prompt_style": style,
        "seed": seed, **info,
        "alignx_args": asdict(args),
        "dpo_args": {k: v for k, v in training_args.to_dict().items() if isinstance(v, (int, float, str, bool, type(None), list))},
        "wall_seconds": round(time.time() - t0, 1), "train_seconds": round(train_seconds, 1),
        "pairs_per_second": round(info["n_train_rows"] * training_args.num_train_epochs / max(train_seconds, 1e-9), 3),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
                    "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if device == "cuda" else None},
        "final_train_loss": result.training_loss,
        "last_logged": last,
        "rewards/accuracies": last.get("rewards/accuracies"),
        "validation": metrics,
        "log_history": history,
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=1, default=str) + "\n")
    trainer.accelerator.print(f"saved adapter to {out} ({log['train_seconds']} s training, "
                              f"{log['pairs_per_second']} pairs/s, loss {result.training_loss:.4f})")
    return log


if __name__ == "__main__":
    main()
