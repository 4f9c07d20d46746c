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
