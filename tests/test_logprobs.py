"""Prefix-shared log-probs (alignx.logprobs) against one full sequence per forward."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from alignx.logprobs import Group, prefix_shared_logps  # noqa: E402

QUESTIONS = ["Hi", "Tell me about dogs, please, in some detail.", "What is 2+2?"]
ANSWERS = [["Hello!", "Go away."], ["Dogs are loyal companions.", "No.", "I prefer cats, to be honest."], ["4"]]


def naive_logp(model, prompt_ids, response_ids, adapter):
    """log p(response | prompt): the whole sequence in one forward, every position's logits."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids, adapter_names=[adapter]).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(logp[len(prompt_ids) - 1 + k, t].item() for k, t in enumerate(response_ids))


def _groups(bb, adapters):
    tok = bb.tokenizer
    return [Group(bb._prompt_ids(bb.build_prompt("universal", q)),
                  [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers], adapter)
            for q, answers, adapter in zip(QUESTIONS, ANSWERS, adapters)]


@pytest.mark.parametrize("adapters", [["__base__"] * 3, ["ica", "__base__", "pba"]], ids=["base", "mixed"])
def test_prefix_shared_equals_full_sequence(backbone_fp32, adapters):
    bb = backbone_fp32
    groups = _groups(bb, adapters)
    with torch.no_grad():
        shared = prefix_shared_logps(bb.model, groups, pad_id=bb.tokenizer.pad_token_id, route=True).numpy()
    naive = [naive_logp(bb.model, g.prompt, r, g.adapter) for g in groups for r in g.responses]
    assert len(shared) == 6
    np.testing.assert_allclose(shared, naive, rtol=1e-4, atol=2e-3)


def test_prefix_shared_keeps_the_graph_for_training(backbone_fp32):
    bb = backbone_fp32
    groups = _groups(bb, ["ica"] * 3)
    lora = [p for n, p in bb.model.named_parameters() if "lora_A.ica" in n]
    for p in lora:
        p.requires_grad_(True)
    try:
        out = prefix_shared_logps(bb.model, groups, pad_id=bb.tokenizer.pad_token_id, route=True)
        out.sum().backward()
        grads = [p.grad for p in lora]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    finally:
        for p in lora:
            p.requires_grad_(False)
            p.grad = None


def test_score_scores_a_repeated_pair_once_and_in_order(backbone_fp32):
    bb = backbone_fp32
    prompts = [bb.build_prompt("universal", q) for q in ("Hi", "What is 2+2?", "Hi", "Hi")]
    responses = ["Hello!", "4", "Go away.", "Hello!"]
    values = bb.score(prompts, responses, batch_size=2)
    one = [bb.score([p], [r])[0] for p, r in zip(prompts, responses)]
    np.testing.assert_allclose(values, one, rtol=1e-5, atol=1e-3)
    assert values[0] == values[3]


def test_bad_groups_are_refused(backbone_fp32):
    with pytest.raises(ValueError, match="empty prompt"):
        prefix_shared_logps(backbone_fp32.model, [Group([], [[1]])], pad_id=0)
    with pytest.raises(ValueError, match="non-empty response"):
        prefix_shared_logps(backbone_fp32.model, [Group([1, 2], [[]])], pad_id=0)
    assert prefix_shared_logps(backbone_fp32.model, [], pad_id=0).numel() == 0


# ----------------------------------------------------------------------------- frozen lower layers


@pytest.fixture(scope="module")
def top_lora(embedded_dir):
    """The embedded model in fp32 with a random (non-zero) LoRA adapter on its top 4 layers only."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(embedded_dir), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        layers_to_transform=[26, 27, 28, 29], init_lora_weights=False)
    return get_peft_model(model, config), AutoTokenizer.from_pretrained(str(embedded_dir))


def _token_groups(tok):
    ids = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    return [Group(ids(q), [ids(a) + [tok.eos_token_id] for a in answers]) for q, answers in
            zip(["Tell me about dogs, please, in some detail.", "What is 2+2?"], [ANSWERS[1], ["4", "Four"]])]


def test_frozen_logps_equal_the_full_forward_with_the_same_gradients(top_lora):
    from alignx.logprobs import decoder_of, frozen_logps

    model, tok = top_lora
    groups = _token_groups(tok)
    with torch.no_grad(), model.disable_adapter():
        ref, frozen = prefix_shared_logps(model, groups, pad_id=0, capture_layer=26)
        base_frozen = frozen_logps(model, groups, frozen, pad_id=0, start=26)
    assert [f.prompt.shape[0] for f in frozen] == [len(g.prompt) for g in groups]
    assert [h.shape[0] for f in frozen for h in f.responses] == [len(r) - 1 for g in groups for r in g.responses]
    np.testing.assert_allclose(base_frozen.numpy(), ref.numpy(), atol=1e-3)

    params = [p for p in model.parameters() if p.requires_grad]
    full = prefix_shared_logps(model, groups, pad_id=0)
    cached = frozen_logps(model, groups, frozen, pad_id=0, start=26)
    assert (full - ref).abs().max() > 0.05  # the adapter does change the scores ...
    np.testing.assert_allclose(cached.detach().numpy(), full.detach().numpy(), atol=1e-3)  # ... and both agree
    g_full = torch.autograd.grad(full.sum(), params)
    g_cached = torch.autograd.grad(cached.sum(), params)
    for a, b in zip(g_full, g_cached):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)

    no_prompt_grad = frozen_logps(model, groups, frozen, pad_id=0, start=26, prompt_grad=False)
    np.testing.assert_allclose(no_prompt_grad.detach().numpy(), full.detach().numpy(), atol=1e-3)
    g_resp = torch.autograd.grad(no_prompt_grad.sum(), params)
    assert all(torch.isfinite(g).all() for g in g_resp) and any(g.abs().sum() > 0 for g in g_resp)
    assert any(not torch.allclose(a, b) for a, b in zip(g_full, g_resp))  # the prompt's part is left out

    layers = decoder_of(model).layers
    assert len(layers) == 30 and [layer.self_attn.layer_idx for layer in layers] == list(range(30))


def test_token_logps_are_the_summands_on_both_paths(top_lora):
    """``tokens=True``: each response's per-token log-probs, summing to its value, the same from the
    full forward and from the frozen states, and the first one predicted by the prompt's last position."""
    from alignx.logprobs import frozen_logps

    model, tok = top_lora
    groups = _token_groups(tok)
    with torch.no_grad():
        with model.disable_adapter():
            _, frozen = prefix_shared_logps(model, groups, pad_id=0, capture_layer=26)
        total, per_token = prefix_shared_logps(model, groups, pad_id=0, tokens=True)
        cached_total, cached = frozen_logps(model, groups, frozen, pad_id=0, start=26, tokens=True)
        g = groups[1]
        logits = model(input_ids=torch.tensor([g.prompt + g.responses[1]])).logits[0, len(g.prompt) - 1:-1]
    responses = [r for g in groups for r in g.responses]
    assert [len(t) for t in per_token] == [len(r) for r in responses] == [len(t) for t in cached]
    torch.testing.assert_close(torch.stack([t.sum() for t in per_token]), total)
    for a, b in zip(per_token, cached):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)
    naive = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(g.responses[1])[:, None])[:, 0]
    torch.testing.assert_close(per_token[4], naive, rtol=1e-3, atol=1e-3)  # group 2's "Four"
    with pytest.raises(ValueError, match="cannot be combined"):
        prefix_shared_logps(model, groups, pad_id=0, tokens=True, dists=True)


def test_frozen_logps_refuse_mismatched_states(top_lora):
    from alignx.logprobs import frozen_logps, top_layers

    model, tok = top_lora
    groups = _token_groups(tok)
    with torch.no_grad(), model.disable_adapter():
        _, frozen = prefix_shared_logps(model, groups, pad_id=0, capture_layer=26)
    with pytest.raises(ValueError, match="2 groups but 1 frozen"):
        frozen_logps(model, groups, frozen[:1], pad_id=0, start=26)
    with pytest.raises(ValueError, match="do not match the token ids"):
        frozen_logps(model, groups[::-1], frozen, pad_id=0, start=26)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        frozen_logps(model, [Group([5], [[6, 7]])], frozen[:1], pad_id=0, start=26)
    with pytest.raises(ValueError, match="outside 0..29"):
        with top_layers(model, 30):
            pass
