"""DPO training (alignx.learn.train): argument parsing, and a real smoke run on the embedded model."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from alignx.learn import train

from conftest import FIXTURES

TINY = FIXTURES / "psoups_tiny.json"


def _argv(tmp_path, *extra):
    return ["--config", "configs/recipes/cpu_smollm2.yaml", "--method", "ica", "--data", str(TINY),
            "--out", str(tmp_path / "adapter"), *extra]


def test_parser_reads_recipe_aliases_and_ignores_launcher_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(_argv(tmp_path, "--epochs", "2", "--lr=3e-4", "--lora-r", "4", "--local_rank", "0"))
    assert (a.method, a.lora_r, a.lora_top_layers, a.augment) == ("ica", 4, 12, "swap:0.5,contrast")
    assert (a.cache_lower_layers, a.prompt_grad, a.save_dtype) == (True, False, "float16")
    assert (d.num_train_epochs, d.learning_rate, d.beta) == (2, 3e-4, 0.1)
    assert d.precompute_ref_log_probs and not d.gradient_checkpointing
    assert d.output_dir == str(tmp_path / "adapter")


def test_fp32_turns_off_the_recipes_bf16_autocast(tmp_path, monkeypatch):
    """The CPU recipe asks for bf16 autocast; on a CPU without native bf16 the fp32 path must also
    clear ``mixed_precision``, which the Accelerator reads (emulated bf16 matmuls are ~7x slower)."""
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    _, d, _ = train.parse_args(_argv(tmp_path))
    assert d.bf16 and d.mixed_precision == "bf16"
    train.set_autocast(d, bf16=False)
    assert not d.bf16 and d.mixed_precision == "no"
    train.set_autocast(d, bf16=True)
    assert d.bf16 and d.mixed_precision == "bf16"


def test_paper_recipe_has_the_paper_hyperparameters(monkeypatch):
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(["--config", "configs/recipes/paper_full_8b.yaml", "--data", "x", "--use_cpu", "true"])
    assert a.model == "meta-llama/Llama-3.1-8B-Instruct" and a.prompt_style == "official-train"
    assert (d.beta, d.learning_rate, d.num_train_epochs, d.max_length) == (0.1, 5e-7, 1, 8192)
    assert d.lr_scheduler_kwargs == {"min_lr_rate": 0.1} and d.warmup_steps == 0.1
    assert d.per_device_train_batch_size * d.gradient_accumulation_steps * 8 == 128


def test_add_parser_registers_train_subcommand():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    train.add_parser(sub)
    args = parser.parse_args(["train", "--method", "pba", "--data", "x.json", "--help"])
    assert args.train_args == ["--method", "pba", "--data", "x.json", "--help"] and callable(args.func)


def test_dpo_smoke_run_logs_a_loss_and_changes_lora_weights(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(_argv(tmp_path, "--per_device_train_batch_size", "2", "--max_steps", "2",
                                      "--logging_steps", "1", "--lora_top_layers", "2", "--lr", "1e-2",
                                      "--max_length", "256", "--disable_tqdm", "true"))
    trainer, info = train.build_trainer(a, d)
    assert info["prompt_style"] == "chat" and info["n_train_rows"] == 4 + 2 + 4  # original + half the swaps + contrast
    assert info["frozen_layers"] == 28  # the layers below the adapter ran once, in the reference pass
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and all("lora" in n for n in before)
    assert all(".layers.28." in n or ".layers.29." in n for n in before)  # top 2 of 30 layers
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs and all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)
    assert "rewards/accuracies" in logs[-1]
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(before[n], after[n].detach()) for n in before if "lora_B" in n)


def test_validation_rows_are_scored_each_epoch_on_their_own_triples(tmp_path, monkeypatch):
    """``--validation_per_persona`` holds back whole triples of the train side; with
    ``--eval_strategy epoch`` the trainer scores them (through the lower-layer cache too)."""
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(_argv(tmp_path, "--per_device_train_batch_size", "4", "--num_train_epochs", "1",
                                      "--lora_top_layers", "2", "--max_length", "256", "--disable_tqdm", "true",
                                      "--validation_per_persona", "1", "--eval_strategy", "epoch",
                                      "--augment", "swap:0.5", "--prompt_grad", "false"))
    trainer, info = train.build_trainer(a, d)
    assert info["n_validation_records"] == 2 and info["n_train_records"] == 2
    assert info["n_validation_rows"] == 2 + 2 and info["n_train_rows"] == 2 + 1  # swaps: all vs half
    train_text = {(r["prompt"], r["chosen"]) for r in trainer.train_dataset}
    assert not train_text & {(r["prompt"], r["chosen"]) for r in trainer.eval_dataset}
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_rewards/accuracies" in h]
    assert len(evals) == 1 and 0 <= evals[0]["eval_rewards/accuracies"] <= 1
    # the metrics are per row, so a short last batch does not weigh its rows more
    trainer.model.eval()
    trainer._metrics["eval"].clear()
    batch = next(iter(trainer.get_eval_dataloader()))
    trainer._compute_loss(trainer.model, batch, False)
    accuracies = trainer._metrics["eval"]["rewards/accuracies"]
    assert len(accuracies) == len(batch["prompt_ids"]) == 4 and set(accuracies) <= {0.0, 1.0}


def test_validation_seed_fixes_the_slice_across_training_seeds(tmp_path, monkeypatch):
    """``--validation_seed`` draws the validation slice on its own, so runs with different training
    seeds are scored on the same records; without it the training seed draws the slice."""
    from transformers import AutoTokenizer

    from alignx.backbone import embedded_model_dir

    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir(None, "fp32"))

    def slice_(seed, *extra):
        a, _, _ = train.parse_args(_argv(tmp_path, "--validation_per_persona", "1", *extra))
        _, val, _ = train.build_rows(a, tokenizer, "chat", seed)
        return sorted({(r["prompt"], r["chosen"]) for r in val if r["kind"] == "original"})

    by_seed = {seed: slice_(seed) for seed in range(6)}
    assert len(set(map(tuple, by_seed.values()))) > 1  # the training seed alone moves the slice
    for seed in range(6):
        assert slice_(seed, "--validation_seed", "3") == by_seed[3]


def test_main_writes_safetensors_adapter_and_log(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    log = train.main(_argv(tmp_path, "--method", "pba", "--per_device_train_batch_size", "4", "--max_steps", "1",
                           "--lora_top_layers", "1", "--max_length", "256", "--disable_tqdm", "true"))
    out = tmp_path / "adapter"
    from alignx.backbone import check_adapter_dir

    check_adapter_dir(out)
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:  # the recipe's save_dtype
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    saved = json.loads((out / "train_log.json").read_text())
    assert saved["seed"] == 42 and saved["method"] == "pba" and len(saved["data_sha256"]) == 64
    assert saved["final_train_loss"] == log["final_train_loss"] and saved["wall_seconds"] > 0
    assert "rewards/accuracies" in saved and saved["machine"]["cpu_count"]


def test_init_adapter_starts_from_another_adapters_weights_and_refuses_a_different_shape(tmp_path, monkeypatch):
    """``--init_adapter DIR`` (e.g. PBA from an ICA adapter) copies every LoRA weight of DIR into the
    run's adapter; a different rank or set of layers is an error rather than a partial start."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    common = ("--per_device_train_batch_size", "4", "--max_steps", "1", "--max_length", "256", "--disable_tqdm", "true")
    a, d, _ = train.parse_args(_argv(tmp_path, *common, "--lora_top_layers", "1"))
    source, _ = train.build_trainer(a, d)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in source.model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn_like(p))
    source.model.save_pretrained(tmp_path / "ica")
    saved = {n: p.detach().clone() for n, p in source.model.named_parameters() if "lora_" in n}

    a, d, _ = train.parse_args(_argv(tmp_path, *common, "--method", "pba", "--lora_top_layers", "1",
                                      "--init_adapter", str(tmp_path / "ica")))
    trainer, info = train.build_trainer(a, d)
    assert info["init_adapter"]["tensors"] == len(saved) == 7 * 2  # A and B of the 7 modules of one layer
    assert info["init_adapter"]["sha256"] == train.file_sha256(tmp_path / "ica" / "adapter_model.safetensors")
    now = {n: p for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert now.keys() == saved.keys() and all(torch.equal(now[n].detach(), saved[n]) for n in saved)
    assert all(p.requires_grad for p in now.values())  # still the trainable adapter

    for extra, message in ((("--lora_top_layers", "2"), "not this run's adapter"),
                           (("--lora_top_layers", "1", "--lora_r", "4", "--lora_alpha", "8"), "its r is 16")):
        a, d, _ = train.parse_args(_argv(tmp_path, *common, *extra, "--init_adapter", str(tmp_path / "ica")))
        with pytest.raises(ValueError, match=message):
            train.build_trainer(a, d)


@pytest.mark.parametrize("losses", [
    (),
    ("--loss_type", "sigmoid", "sft", "ipo", "apo_zero", "--loss_weights", "1", "0.5", "0.01", "1", "--max_steps", "2"),
], ids=["sigmoid", "mixed"])
def test_prefix_sharing_matches_trl_concatenated_forward(tmp_path, monkeypatch, losses):
    """Same reference log-probs and the same losses as TRL's own forward (fp32, same rows). The
    mixed run also compares its second step, after the LoRA weights have moved."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    results = {}
    for sharing in ("true", "false"):
        a, d, _ = train.parse_args(_argv(tmp_path, "--precision", "fp32", "--bf16", "false",
                                          "--per_device_train_batch_size", "4", "--max_steps", "1", *losses,
                                          "--logging_steps", "1", "--lora_top_layers", "2", "--max_length", "512",
                                          "--disable_tqdm", "true", "--prefix_sharing", sharing,
                                          "--train_sampling_strategy", "sequential"))
        trainer, info = train.build_trainer(a, d)
        assert info["prefix_sharing"] is (sharing == "true")
        ds = trainer.train_dataset
        ref = torch.tensor(list(ds["ref_chosen_logps"]) + list(ds["ref_rejected_logps"]))
        trainer.train()
        results[sharing] = (ref, [h for h in trainer.state.log_history if "loss" in h])
    ref_shared, logs_shared = results["true"]
    ref_trl, logs_trl = results["false"]
    assert torch.allclose(ref_shared, ref_trl, rtol=1e-4, atol=1e-3)
    assert len(logs_shared) == len(logs_trl) == (2 if losses else 1)
    if not losses:  # LoRA B starts at zero, so the first sigmoid loss is ln 2 on both paths
        assert logs_shared[0]["loss"] == pytest.approx(0.6931, abs=1e-4)
    for shared, trl in zip(logs_shared, logs_trl):
        assert shared["loss"] == pytest.approx(trl["loss"], rel=1e-3, abs=1e-4)
        assert shared["logps/chosen"] == pytest.approx(trl["logps/chosen"], rel=1e-4)
        assert shared["logps/rejected"] == pytest.approx(trl["logps/rejected"], rel=1e-4)


def test_preference_loss_formulas_by_hand():
    torch = pytest.importorskip("torch")
    c, r = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -18.0])
    rc, rr = torch.tensor([-11.0, -20.0]), torch.tensor([-11.0, -19.0])
    nc, nr = torch.tensor([5, 10]), torch.tensor([4, 8])
    f = lambda types, weights=None: float(train.preference_loss(types, weights, 0.5, c, r, rc, rr, nc, nr))
    # log-ratios: chosen (1, 0), rejected (-1, 1); margins (2, -1)
    sig = lambda x: 1 / (1 + math.exp(-x))
    assert f(["sigmoid"]) == pytest.approx((-math.log(sig(1.0)) - math.log(sig(-0.5))) / 2)
    assert f(["sft"]) == pytest.approx(30 / 15)
    assert f(["apo_zero"]) == pytest.approx(((1 - sig(0.5)) + sig(-0.5) + (1 - sig(0.0)) + sig(0.5)) / 2)
    assert f(["ipo"]) == pytest.approx(((1 / 5 + 1 / 4 - 1) ** 2 + (0 - 1 / 8 - 1) ** 2) / 2)
    assert f(["sigmoid", "sft"], [1.0, 0.25]) == pytest.approx(f(["sigmoid"]) + 0.25 * f(["sft"]))
    # drift: the pair's mean log-ratio per token, squared: (1 - 1) / 9 and (0 + 1) / 18
    assert f(["drift"]) == pytest.approx((0.0 + (1 / 18) ** 2) / 2)
    assert f(["sigmoid", "drift"], [1.0, 3.0]) == pytest.approx(f(["sigmoid"]) + 3 * f(["drift"]))
    with pytest.raises(ValueError, match="exo_pair"):
        f(["exo_pair"])
    with pytest.raises(ValueError, match="2 loss types"):
        f(["sigmoid", "sft"], [1.0])
    # sft over the rows weighted 1 only (--sft_rows): row 2 alone gives 20 nats over 10 tokens
    masked = lambda w: float(train.preference_loss(["sft"], None, 0.5, c, r, rc, rr, nc, nr, sft_weight=torch.tensor(w)))
    assert masked([0.0, 1.0]) == pytest.approx(20 / 10)
    assert masked([1.0, 1.0]) == pytest.approx(f(["sft"]))
    assert masked([0.0, 0.0]) == 0.0


def test_drift_term_is_the_pairs_mean_log_ratio_squared_and_needs_prefix_sharing(tmp_path, monkeypatch):
    """``--loss_type sigmoid drift``: refused before the model loads where TRL's forward would run; in
    the prefix-sharing forward the loss is DPO + W x the squared per-token mean of both log-ratios,
    and that mean is logged per row."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    base = ("--method", "ica", "--per_device_train_batch_size", "4", "--max_steps", "1", "--lora_top_layers", "2",
            "--max_length", "512", "--disable_tqdm", "true", "--loss_type", "sigmoid", "drift")
    a, d, _ = train.parse_args(_argv(tmp_path, *base, "--prefix_sharing", "false"))
    with pytest.raises(ValueError, match="drift needs the prefix-sharing forward"):
        train.build_trainer(a, d)
    a, d, _ = train.parse_args(_argv(tmp_path, *base, "--loss_weights", "1", "5"))
    trainer, _ = train.build_trainer(a, d)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():  # move the adapter off zero so that the log-ratios are not all 0
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
        chosen, rejected = trainer._pair_logps(trainer.model, batch)
        loss = float(trainer._compute_loss(trainer.model, batch, False))
    c_lr = chosen - batch["ref_chosen_logps"]
    r_lr = rejected - batch["ref_rejected_logps"]
    n = torch.tensor([len(x) + len(y) for x, y in zip(batch["chosen_ids"], batch["rejected_ids"])], dtype=torch.float)
    per_token = (c_lr + r_lr) / n
    assert float(per_token.abs().max()) > 1e-3
    dpo = -torch.nn.functional.logsigmoid(0.1 * (c_lr - r_lr)).mean()
    assert loss == pytest.approx(float(dpo + 5 * (per_token ** 2).mean()), rel=1e-5)
    assert trainer._metrics["train"]["logratio/per_token"][-4:] == pytest.approx(per_token.tolist(), rel=1e-5)


def test_sft_rows_counts_only_the_chosen_kinds(tmp_path, monkeypatch):
    """``--sft_rows original``: the rows carry an sft weight by kind, the collator hands it to the
    loss, and settings under which it would be ignored are refused before the model loads."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    base = ("--method", "ica", "--augment", "swap", "--per_device_train_batch_size", "4", "--max_steps", "1",
            "--lora_top_layers", "2", "--max_length", "512", "--disable_tqdm", "true")
    for extra, msg in [(("--loss_type", "sigmoid", "sft", "--sft_rows", "origin"), "unknown row kind"),
                       (("--sft_rows", "original"), "has no sft"),
                       (("--loss_type", "sigmoid", "sft", "--sft_rows", "original", "--prefix_sharing", "false"),
                        "prefix-sharing forward")]:
        a, d, _ = train.parse_args(_argv(tmp_path, *base, *extra))
        with pytest.raises(ValueError, match=msg):
            train.build_trainer(a, d)
    a, d, _ = train.parse_args(_argv(tmp_path, *base, "--loss_type", "sigmoid", "sft", "--loss_weights", "0", "1",
                                      "--sft_rows", "original"))
    trainer, _ = train.build_trainer(a, d)
    rows, _, _ = train.build_rows(a, trainer.processing_class, "chat", d.seed)
    assert {r["kind"] for r in rows} == {"original", "swap"}
    assert trainer.train_dataset["sft_weight"] == [float(r["kind"] == "original") for r in rows]
    batch = next(iter(trainer.get_train_dataloader()))  # as training sees it, past remove_unused_columns
    assert "sft_weight" in batch
    chosen, _ = trainer._pair_logps(trainer.model, batch)
    w = batch["sft_weight"]
    tokens = torch.tensor([len(x) for x in batch["chosen_ids"]], dtype=torch.float)
    expected = -(w * chosen).sum() / (w * tokens).sum().clamp(min=1.0)
    loss = trainer._compute_loss(trainer.model, batch, False).detach()
    assert float(loss) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_teacher_prompts_put_the_style_before_the_task_and_refuse_what_they_cannot_build():
    from transformers import AutoTokenizer

    from alignx.backbone import embedded_model_dir

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    rows = [{"task": "Name a fruit.", "style": "Be rude."}, {"task": "Add 2 and 2.", "style": "Be kind."}]
    (own, other, none), _ = train.teacher_prompts(rows, tok, seed=0)
    assert own.index("Be rude.") < own.index("Name a fruit.") and "Be kind." in other and "Be rude." not in other
    assert "Name a fruit." in none and "Be rude." not in none and "Be kind." not in none
    assert own.rstrip().endswith("assistant") and none.rstrip().endswith("assistant")  # ready for the response
    with pytest.raises(ValueError, match="1 rows have none"):
        train.teacher_prompts([*rows, {"task": "x", "style": None}], tok, seed=0)
    with pytest.raises(ValueError, match="at least two"):
        train.teacher_prompts([rows[0], dict(rows[1], style="Be rude.")], tok, seed=0)


def test_policy_context_teacher_puts_the_style_before_the_rows_own_system_sentence(tmp_path, monkeypatch):
    """``--distill_context policy``: the teacher reads the row's whole prompt (persona included) with the
    style before its system sentence, so it differs from the reference by the style alone."""
    from transformers import AutoTokenizer

    from alignx.backbone import embedded_model_dir
    from alignx.prompts import EVAL_WORDING, build_prompt
    from alignx.schema import PairItem, Persona

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    persona = Persona(pairs=[PairItem(prompt="Say hi.", chosen="Hey buddy!", rejected="Hello.")])
    ica = build_prompt("ica", "Name a fruit.", persona=persona, style="chat", tokenizer=tok)
    pba = build_prompt("pba", "Name a fruit.", profile="Likes humor", style="chat", tokenizer=tok)
    rows = [{"task": "Name a fruit.", "style": "Be rude.", "method": "ica", "prompt": ica},
            {"task": "Name a fruit.", "style": "Be kind.", "method": "pba", "prompt": pba}]
    (own, other, none), (own2, other2, none2) = train.teacher_prompts(rows, tok, seed=0, context="policy",
                                                                      template="chat")
    assert none == ica and none2 == pba
    assert own == ica.replace(EVAL_WORDING.ica_system, "Be rude. " + EVAL_WORDING.ica_system)
    assert other == ica.replace(EVAL_WORDING.ica_system, "Be kind. " + EVAL_WORDING.ica_system)
    assert own2 == pba.replace(EVAL_WORDING.pba_system, "Be kind. " + EVAL_WORDING.pba_system)
    assert "Hey buddy!" in own and own.index("Be rude.") < own.index("Name a fruit.")
    with pytest.raises(ValueError, match="system sentence"):
        train.teacher_prompts([dict(rows[0], prompt="no system here"), rows[1]], tok, seed=0, context="policy",
                              template="chat")
    with pytest.raises(ValueError, match="unknown distill context"):
        train.teacher_prompts(rows, tok, seed=0, context="ica")
    # reference: the style goes into the ICA reference prompt (whole persona), also for a PBA row
    ref_rows = [dict(r, ref_prompt=ica) for r in rows]
    (own, _, none), (own2, _, none2) = train.teacher_prompts(ref_rows, tok, seed=0, context="reference", template="chat")
    assert none == none2 == ica and "Hey buddy!" in own2
    assert own2 == ica.replace(EVAL_WORDING.ica_system, "Be kind. " + EVAL_WORDING.ica_system)
    with pytest.raises(ValueError, match="needs reference ica-prompt"):
        train.teacher_prompts(rows, tok, seed=0, context="reference", template="chat")
    a, d, _ = train.parse_args(_argv(tmp_path, "--distill_weight", "1", "--distill_context", "reference"))
    assert "set reference ica-prompt" in train.distill_unsupported(a, d, True)


def test_distill_stores_the_contrasted_teacher_and_adds_its_cross_entropy(tmp_path, monkeypatch):
    """``--distill_weight``: the reference pass keeps, per response token, the teacher's top-k
    distribution (the base model told the row user's style as a system message, contrasted with the
    other style; checked against plain full forwards), the loss adds the weighted cross-entropy to
    it, training logs it, and settings that cannot run it are refused before the model loads."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    base = ("--method", "ica", "--augment", "swap", "--per_device_train_batch_size", "2", "--max_steps", "2",
            "--logging_steps", "1", "--lora_top_layers", "2", "--max_length", "512", "--disable_tqdm", "true",
            "--precision", "fp32")  # fp32: compared with plain forwards below (auto picks bf16 on AVX512-BF16)
    a, d, _ = train.parse_args(_argv(tmp_path, *base, "--distill_weight", "1", "--prefix_sharing", "false"))
    with pytest.raises(ValueError, match="distill_weight: .*prefix-sharing forward"):
        train.build_trainer(a, d)
    a, d, _ = train.parse_args(_argv(tmp_path, *base, "--distill_weight", "0.5", "--distill_alpha", "0.5",
                                      "--distill_topk", "8"))
    trainer, _ = train.build_trainer(a, d)
    ds, tok, model = trainer.train_dataset, trainer.processing_class, trainer.model
    styles = {r["ground_truth_persona"] for r in json.loads(TINY.read_text())}
    for k in range(len(ds)):
        row = ds[k]
        own, other = ({s for s in styles if s in row[c]} for c in ("teacher_prompt", "teacher_other"))
        assert len(own) == len(other) == 1 and own != other
        assert "***Historical Behavior" not in row["teacher_prompt"]  # the style instead of the persona
    row = ds[len(ds) - 1]
    resp = list(row["rejected_ids"])
    with torch.no_grad(), model.disable_adapter():
        lp = []
        for col in ("teacher_prompt", "teacher_other"):
            ids = tok(text=row[col])["input_ids"]
            logits = model(input_ids=torch.tensor([ids + resp])).logits[0, len(ids) - 1:-1]
            lp.append(torch.log_softmax(logits.float(), -1))
    z = torch.log_softmax(1.5 * lp[0] - 0.5 * lp[1], -1)
    idx, logq = trainer._teacher[row["row_id"]][1]
    assert idx.shape == logq.shape == (len(resp), 8)
    assert torch.allclose(z.gather(-1, idx.long()), z.topk(8, -1).values, atol=1e-4)  # the top 8 tokens
    assert torch.allclose(logq, torch.log_softmax(z.topk(8, -1).values, -1), atol=1e-4)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        with_term = float(trainer._compute_loss(model, batch, False))
        ce = trainer._metrics["train"]["distill/ce"][-1]
        trainer.distill = None
        without = float(trainer._compute_loss(model, batch, False))
        trainer.distill = {"weight": 0.5, "alpha": 0.5, "topk": 8}
    assert ce > 0 and with_term == pytest.approx(without + 0.5 * ce, rel=1e-5)
    trainer.train()
    logged = [h["distill/ce"] for h in trainer.state.log_history if "distill/ce" in h]
    assert len(logged) == 2 and all(math.isfinite(x) and x > 0 for x in logged)


def test_distill_policy_context_teacher_reads_the_persona_and_its_targets_come_back_from_the_cache(tmp_path,
                                                                                                  monkeypatch):
    """``--distill_context policy``: the teacher's prompt is the row's own ICA prompt with the style
    before its system sentence (checked against a plain forward), and with ``--ref_cache`` a second
    run takes the stored top-k targets instead of running the teacher."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    argv = _argv(tmp_path, "--method", "ica", "--augment", "swap", "--per_device_train_batch_size", "2", "--max_steps",
                 "1", "--lora_top_layers", "2", "--max_length", "512", "--disable_tqdm", "true", "--distill_weight",
                 "1", "--distill_alpha", "0", "--distill_topk", "4", "--distill_context", "policy", "--ref_cache",
                 str(tmp_path / "cache"), "--precision", "fp32")  # fp32: compared with plain forwards
    a, d, _ = train.parse_args(argv)
    trainer, _ = train.build_trainer(a, d)
    ds, tok, model = trainer.train_dataset, trainer.processing_class, trainer.model
    row = ds[0]
    assert row["teacher_none"] == row["prompt"] and "***Historical Behavior" in row["teacher_prompt"]
    styles = {r["ground_truth_persona"] for r in json.loads(TINY.read_text())}
    told = [st for st in styles if row["teacher_prompt"].replace(st + " ", "", 1) == row["prompt"]]
    assert len(told) == 1 and told[0] + " Generate a task-specific" in row["teacher_prompt"]
    resp = list(row["chosen_ids"])
    ids = tok(text=row["teacher_prompt"])["input_ids"]
    with torch.no_grad(), model.disable_adapter():
        z = torch.log_softmax(model(input_ids=torch.tensor([ids + resp])).logits[0, len(ids) - 1:-1].float(), -1)
    idx, logq = trainer._teacher[row["row_id"]][0]
    assert torch.allclose(z.gather(-1, idx.long()), z.topk(4, -1).values, atol=1e-4)
    stored = {k: [(i.clone(), q.clone()) for i, q in v] for k, v in trainer._teacher.items()}
    assert len(list((tmp_path / "cache").rglob("*.pt"))) >= len(ds)

    import alignx.logprobs

    calls = []
    real = alignx.logprobs.prefix_shared_logps
    monkeypatch.setattr(alignx.logprobs, "prefix_shared_logps",
                        lambda *a, **k: calls.append(k.get("dists")) or real(*a, **k))
    a, d, _ = train.parse_args(argv)
    again, _ = train.build_trainer(a, d)
    assert True not in calls  # no teacher forward: every target came from the cache
    for k, v in again._teacher.items():
        assert all(torch.equal(i, j) and torch.equal(q, r) for (i, q), (j, r) in zip(v, stored[k]))


@pytest.mark.parametrize("lower_cache", ["true", "false"])
def test_distill_logratio_stores_per_token_goals_and_adds_their_squared_gap(tmp_path, monkeypatch, lower_cache):
    """``--distill_mode logratio``: per response token, the stored goal is the reference's log-prob
    plus the teacher's shift over the task alone, ``(1 + a) (own - none) - a (other - none)``, capped
    at 0 (checked against plain full forwards); the loss adds the weighted mean squared gap between
    the policy's token log-probs and the goals; mode ``anchor`` takes the reference's token log-probs
    as the goals. With and without the lower-layer cache (without it the teacher alone brings the
    reference pass); the token log-probs are kept in ``--ref_cache``."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(_argv(tmp_path, "--method", "ica", "--augment", "swap", "--per_device_train_batch_size",
                                      "2", "--max_steps", "1", "--logging_steps", "1", "--lora_top_layers", "2",
                                      "--max_length", "512", "--disable_tqdm", "true", "--distill_weight", "0.5",
                                      "--precision", "fp32",  # compared with plain forwards
                                      "--distill_alpha", "0.5", "--distill_mode", "logratio",
                                      "--cache_lower_layers", lower_cache, "--ref_cache", str(tmp_path / "cache")))
    trainer, info = train.build_trainer(a, d)
    assert info["frozen_layers"] == (28 if lower_cache == "true" else 0)
    ds, tok, model = trainer.train_dataset, trainer.processing_class, trainer.model
    row = ds[len(ds) - 1]
    resp = list(row["chosen_ids"])

    def token_logps(prompt_ids):
        with torch.no_grad(), model.disable_adapter():
            logits = model(input_ids=torch.tensor([prompt_ids + resp])).logits[0, len(prompt_ids) - 1:-1]
        return torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(resp)[:, None])[:, 0]

    own, other, none = (token_logps(tok(text=row[c])["input_ids"]) for c in train.TEACHER_COLUMNS)
    ref = token_logps(list(row["prompt_ids"]))
    assert float(ref.sum()) == pytest.approx(row["ref_chosen_logps"], abs=2e-3)
    expected = (ref + 1.5 * (own - none) - 0.5 * (other - none)).clamp(max=0.0)
    goal = trainer._teacher[row["row_id"]][0]
    assert goal.shape == (len(resp),) and (expected - none).abs().max() > 0.1
    assert torch.allclose(goal, expected, atol=2e-3)
    distill = trainer.distill  # mode anchor: the goal is the reference's own token log-probs
    trainer.distill = dict(distill, mode="anchor")
    frozen = [trainer._frozen[row["row_id"]]] if lower_cache == "true" else None
    [(anchor, _)] = trainer._teacher_targets([row], trainer.data_collator([row]), None, frozen)
    trainer.distill = distill
    assert torch.allclose(anchor, ref, atol=2e-3)
    stored = {p.stem: torch.load(p, weights_only=True) for p in (tmp_path / "cache").rglob("*.pt")}
    assert trainer._token_memo and all(torch.equal(stored[k], v) for k, v in trainer._token_memo.items())
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        with_term = float(trainer._compute_loss(model, batch, False))
        mse = trainer._metrics["train"]["distill/mse"][-1]
        _, _, lps = trainer._pair_logps(model, batch, dists=True)
        goals = [trainer._teacher[i][k] for i in batch["row_id"] for k in (0, 1)]
        by_hand = sum(float(((lp - g) ** 2).sum()) for lp, g in zip(lps, goals)) / sum(len(g) for g in goals)
        distill, trainer.distill = trainer.distill, None
        without = float(trainer._compute_loss(model, batch, False))
        trainer.distill = distill
    assert mse == pytest.approx(by_hand, rel=1e-4) and mse > 0
    assert with_term == pytest.approx(without + 0.5 * mse, rel=1e-5)
    trainer.train()
    assert [h["distill/mse"] for h in trainer.state.log_history if "distill/mse" in h]


def test_ica_prompt_reference_scores_responses_after_the_ica_prompt(tmp_path, monkeypatch):
    """``--reference ica-prompt``: the reference log-probs are the base model's after each row's ICA
    prompt (checked against a plain full forward), the cached lower-layer states are the policy
    prompt's, and training runs on them."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(_argv(tmp_path, "--method", "pba", "--reference", "ica-prompt", "--precision", "fp32",
                                      "--bf16", "false", "--per_device_train_batch_size", "4", "--max_steps", "1",
                                      "--logging_steps", "1", "--lora_top_layers", "2", "--max_length", "512",
                                      "--disable_tqdm", "true", "--augment", "swap"))
    trainer, info = train.build_trainer(a, d)
    assert info["frozen_layers"] == 28
    ds, tok, model = trainer.train_dataset, trainer.processing_class, trainer.model
    for k in (0, len(ds) - 1):
        row = ds[k]
        assert "***User Preferences***" in row["prompt"] and "*Chosen:*" in row["ref_prompt"]
        ref_ids = tok(text=row["ref_prompt"])["input_ids"]
        for key in ("chosen", "rejected"):
            resp = list(row[f"{key}_ids"])
            with torch.no_grad(), model.disable_adapter():
                logits = model(input_ids=torch.tensor([ref_ids + resp])).logits[0, len(ref_ids) - 1:-1]
            expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(resp)[:, None]).sum()
            assert row[f"ref_{key}_logps"] == pytest.approx(float(expected), abs=2e-3)
        frozen = trainer._frozen[row["row_id"]]
        assert frozen.prompt.shape[0] == len(row["prompt_ids"]) != len(ref_ids)  # the policy prompt's states
    trainer.train()
    assert [h for h in trainer.state.log_history if "loss" in h]


def test_pair_batches_put_each_original_row_and_its_swap_in_one_batch(tmp_path, monkeypatch):
    """``--pair_batches``: the training dataloader (after TRL's tokenizing and column pruning) batches
    every original row with its persona-swapped row, in a new order every epoch."""
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(_argv(tmp_path, "--method", "pba", "--per_device_train_batch_size", "4",
                                      "--augment", "swap", "--pair_batches", "true", "--lora_top_layers", "2",
                                      "--max_length", "256", "--disable_tqdm", "true", "--max_steps", "1",
                                      "--logging_steps", "1"))
    trainer, info = train.build_trainer(a, d)
    assert info["n_train_rows"] == 8
    loader = trainer.get_train_dataloader()
    epochs = [[(tuple(map(tuple, b["chosen_ids"])), tuple(map(tuple, b["rejected_ids"])), tuple(map(tuple, b["prompt_ids"])))
               for b in loader] for _ in range(3)]
    for batches in epochs:
        assert [len(chosen) for chosen, _, _ in batches] == [4, 4]
        for chosen, rejected, prompts in batches:  # each row's swap partner: same triple, labels exchanged
            for c, r, p in zip(chosen, rejected, prompts):
                partners = [q for c2, r2, q in zip(chosen, rejected, prompts) if (c2, r2) == (r, c)]
                assert len(partners) == 1 and partners[0] != p  # under another user's profile
    assert len({tuple(b) for b in epochs}) > 1  # a new order every epoch
    trainer.train()
    assert [h for h in trainer.state.log_history if "loss" in h]
    a, d, _ = train.parse_args(_argv(tmp_path, "--pair_batches", "true", "--per_device_train_batch_size", "3"))
    with pytest.raises(ValueError, match="pair_batches needs an even per_device_train_batch_size, got 3"):
        train.build_trainer(a, d)  # refused before the model loads


def test_ref_cache_keeps_the_reference_pass_for_the_next_run(tmp_path, monkeypatch):
    """``--ref_cache DIR``: the first run writes one entry per row (log-probs and lower-layer states);
    a second run on the same rows reads them instead of running the pass, a batch with one missing
    entry recomputes only that row, and a row whose tokens change misses."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    cache = tmp_path / "ref_cache"
    argv = ("--method", "pba", "--per_device_train_batch_size", "2", "--lora_top_layers", "2",
            "--max_length", "256", "--disable_tqdm", "true", "--max_steps", "1", "--ref_cache", str(cache))
    a, d, _ = train.parse_args(_argv(tmp_path, *argv))
    first, info = train.build_trainer(a, d)
    entries = sorted(cache.glob("*/*.pt"))
    assert len(entries) == info["n_train_rows"] == len(first.train_dataset) > 0
    # mark one entry: the next run must take its values from the cache, not recompute them
    row = first.train_dataset[0]
    key = first._ref_cache_keys(first.data_collator([row]), None)[0]
    entry = torch.load(first._ref_cache_path(key), weights_only=True)
    assert entry["chosen"] == pytest.approx(row["ref_chosen_logps"])
    torch.save(dict(entry, chosen=entry["chosen"] - 100.0), first._ref_cache_path(key))
    second, _ = train.build_trainer(a, d)
    assert second.train_dataset["ref_chosen_logps"][0] == pytest.approx(row["ref_chosen_logps"] - 100.0)
    assert second.train_dataset["ref_rejected_logps"] == pytest.approx(first.train_dataset["ref_rejected_logps"])
    f1, f2 = first._frozen[row["row_id"]], second._frozen[second.train_dataset[0]["row_id"]]
    assert torch.equal(f1.prompt, f2.prompt) and all(torch.equal(x, y) for x, y in zip(f1.responses, f2.responses))
    second.train()  # trains from the cached states
    assert len(sorted(cache.glob("*/*.pt"))) == len(entries)  # nothing recomputed, nothing new
    # a partial hit: with the entry of the marked row's batch-mate gone, only that row is recomputed
    mate = first.train_dataset[1]
    mate_path = first._ref_cache_path(first._ref_cache_keys(first.data_collator([mate]), None)[0])
    mate_path.unlink()
    third, _ = train.build_trainer(a, d)
    assert third.train_dataset["ref_chosen_logps"][0] == pytest.approx(row["ref_chosen_logps"] - 100.0)
    assert third.train_dataset["ref_chosen_logps"][1] == pytest.approx(mate["ref_chosen_logps"], abs=1e-4)
    assert mate_path.exists() and len(sorted(cache.glob("*/*.pt"))) == len(entries)
    a, d, _ = train.parse_args(_argv(tmp_path, *argv, "--lora_top_layers", "3"))  # other states: other keys
    train.build_trainer(a, d)
    assert len(sorted(cache.glob("*/*.pt"))) == 2 * len(entries)


def test_ica_prompt_reference_needs_the_precomputed_prefix_sharing_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    for extra, msg in [(("--prefix_sharing", "false"), "prefix-sharing forward"),
                       (("--precompute_ref_log_probs", "false"), "precompute_ref_log_probs true")]:
        a, d, _ = train.parse_args(_argv(tmp_path, "--reference", "ica-prompt", *extra))
        with pytest.raises(ValueError, match=f"reference='ica-prompt': .*{msg}"):
            train.build_trainer(a, d)  # refused before the model loads


def test_prefix_sharing_collator_truncates_as_configured():
    keep_end = train.PrefixSharingCollator(max_length=6, truncation_mode="keep_end")
    batch = keep_end([{"prompt_ids": [1, 2, 3, 4, 5], "chosen_ids": [6, 7], "rejected_ids": [8, 9, 10],
                       "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0}])
    assert batch["prompt_ids"] == [[3, 4, 5]] and batch["rejected_ids"] == [[8, 9, 10]]
    assert batch["ref_chosen_logps"].tolist() == [-1.0]
    keep_start = train.PrefixSharingCollator(max_length=6, truncation_mode="keep_start")
    batch = keep_start([{"prompt_ids": [1, 2, 3, 4, 5], "chosen_ids": [6, 7], "rejected_ids": [8, 9, 10]}])
    assert batch["prompt_ids"] == [[1, 2, 3, 4, 5]] and batch["chosen_ids"] == [[6]] and batch["rejected_ids"] == [[8]]
    assert "ref_chosen_logps" not in batch


def test_cast_adapter_halves_the_file_and_keeps_the_values(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    w = {"base_model.model.layers.29.mlp.down_proj.lora_A.weight": torch.randn(16, 1536) * 0.02,
         "base_model.model.layers.29.mlp.down_proj.lora_B.weight": torch.randn(576, 16) * 1e-3}
    save_file(w, str(tmp_path / "adapter_model.safetensors"))
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    train.cast_adapter(tmp_path, "float16")
    back = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 0.55 * size
    for k, v in w.items():
        assert back[k].dtype == torch.float16
        torch.testing.assert_close(back[k].float(), v, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        train.cast_adapter(tmp_path, "int8")
