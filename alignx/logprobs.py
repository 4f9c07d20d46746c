"""Summed response log-probabilities with each prompt computed once (prefix sharing).

Scoring and DPO training both need ``log p(response | prompt)`` for several responses to one
prompt: chosen and rejected share it, and so do the policy and reference passes of one record.
The naive way runs ``prompt + response`` once per response, so the prompt (90% of the tokens on
P-SOUPS ICA prompts) is computed again for every response. Here:

1. the distinct prompts of a batch run once, left-padded, keeping their KV cache and the logits
   of their last position (which predict every response's first token);
2. the cache is repeated for each prompt's responses, and the responses run as one right-padded
   batch on top of it; only response positions go through the LM head.

The result is the same quantity as the full-sequence forward (checked in ``tests/test_logprobs.py``
against one-sequence-per-forward scoring), and it keeps the autograd graph when gradients are on,
so `alignx.learn.train` trains through it. Works with any causal LM that takes ``cache=`` and
``position_ids``, with or without peft's per-row ``adapter_names`` routing.

    from alignx.logprobs import Group, prefix_shared_logps
    logps = prefix_shared_logps(model, [Group(prompt_ids, [chosen_ids, rejected_ids])], pad_id=0)

Training a LoRA adapter on the top layers only adds a second saving: the layers below it compute
the same states whatever the adapter's weights. `prefix_shared_logps(..., capture_layer=L)` keeps
the states entering layer ``L`` (from the reference pass, which runs anyway), and `frozen_logps`
then runs only layers ``L:`` on them, with the same values and gradients as the full forward
(``tests/test_logprobs.py``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Group:
    """One prompt and the responses scored after it.

    Args:
        prompt (`list[int]`): prompt token ids (with BOS if the model wants one); not empty.
        responses (`list[list[int]]`): response token ids (with EOS if it counts); none empty.
        adapter (`str`, *optional*): peft adapter name for this group's rows (``"__base__"`` for
            none); only used when ``route=True``.
    """

    prompt: list[int]
    responses: list[list[int]]
    adapter: str | None = None


def _pad(rows: Sequence[torch.Tensor], fill, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack rows of different lengths (dim 0) into one batch, and its 0/1 mask.

    Left padding makes every row end at the last column (prompts, so their last positions line up);
    right padding puts the pads after the real tokens (responses).
    """
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width, *rows[0].shape[1:]), fill, dtype=rows[0].dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        out[k, span] = r
        mask[k, span] = 1
    return out, mask


def prefix_shared_logps(model, groups: Sequence[Group], *, pad_id: int, route: bool = False,
                        capture_layer: int | None = None, dists: bool = False, tokens: bool = False):
    """Summed log p(response | prompt) for every response of every group, in order.

    Args:
        model: a causal LM (or a peft model wrapping one).
        groups: the prompts and their responses.
        pad_id: the id used for padding (masked out; any valid id works).
        route: pass each row's ``Group.adapter`` as peft's ``adapter_names``.
        capture_layer (`int`, *optional*): also return, per group, the hidden states entering decoder
            layer ``capture_layer`` (a `Frozen`), for `frozen_logps`.
        dists (`bool`): also return, per response, the log-probability distributions over the
            vocabulary that predict its tokens, ``(len(response), vocab)`` (not with ``capture_layer``).
        tokens (`bool`): also return, per response, the log-prob of each of its tokens,
            ``(len(response),)`` (the summands of its value; not with ``capture_layer`` or ``dists``).

    Returns:
        A float32 tensor of ``sum(len(g.responses))`` values, differentiable when grad is enabled;
        with ``capture_layer``, the pair ``(logps, list[Frozen])``; with ``dists`` or ``tokens``, the
        pair ``(logps, list[Tensor])``.
    """
    if sum((dists, tokens, capture_layer is not None)) > 1:
        raise ValueError("dists, tokens and capture_layer cannot be combined")
    if not groups:
        return torch.zeros(0)
    for k, g in enumerate(groups):
        if not g.prompt:
            raise ValueError(f"group {k}: empty prompt (it needs at least a BOS token)")
        if not g.responses or any(len(r) == 0 for r in g.responses):
            raise ValueError(f"group {k}: every group needs at least one non-empty response")
    device = model.device
    n_groups = len(groups)
    p_lens = torch.tensor([len(g.prompt) for g in groups])
    prompt_ids, prompt_mask = _pad([torch.tensor(g.prompt) for g in groups], pad_id, left=True)
    width_p = prompt_ids.shape[1]
    prompt_pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"adapter_names": [g.adapter or "__base__" for g in groups]} if route else {}
    capture = {"output_hidden_states": True} if capture_layer is not None else {}
    out = model(input_ids=prompt_ids.to(device), attention_mask=prompt_mask.to(device),
                position_ids=prompt_pos.to(device), use_cache=True, logits_to_keep=1, **extra, **capture)
    if capture_layer is not None:
        h = out.hidden_states[capture_layer].detach().float().cpu()
        frozen = [Frozen(h[k, width_p - len(g.prompt):].clone(), []) for k, g in enumerate(groups)]
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (groups, vocab): each first response token
    cache = out.cache

    counts = torch.tensor([len(g.responses) for g in groups])
    owner = torch.repeat_interleave(torch.arange(n_groups), counts)  # response row -> its group
    cache.batch_select_indices(owner.to(device))
    responses = [r for g in groups for r in g.responses]
    n_rows = len(responses)
    resp_ids, resp_mask = _pad([torch.tensor(r) for r in responses], pad_id, left=False)
    width_r = resp_ids.shape[1]
    mask = torch.cat([prompt_mask[owner], resp_mask], dim=1)
    pos = p_lens[owner][:, None] + torch.arange(width_r)[None, :]
    heads = first[owner.to(device), resp_ids[:, 0].to(device)]  # each response's first token
    total = heads
    if width_r > 1:
        extra = {"adapter_names": [groups[int(k)].adapter or "__base__" for k in owner]} if route else {}
        # position t predicts token t + 1; the last position predicts nothing
        out = model(input_ids=resp_ids[:, :-1].to(device), attention_mask=mask[:, :-1].to(device),
                    position_ids=pos[:, :-1].to(device), cache=cache, use_cache=True, **extra, **capture)
        logits = out.logits
        if capture_layer is not None:
            h = out.hidden_states[capture_layer].detach().float().cpu()
            for j, r in enumerate(responses):
                frozen[int(owner[j])].responses.append(h[j, :len(r) - 1].clone())
        logp = torch.log_softmax(logits.float(), dim=-1)
        targets = resp_ids[:, 1:].to(device)
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        keep = resp_mask[:, 1:].to(device, dtype=token_logp.dtype)
        total = total + (token_logp * keep).sum(-1)
    elif capture_layer is not None:
        for j in range(n_rows):
            frozen[int(owner[j])].responses.append(torch.zeros(0, frozen[0].prompt.shape[-1]))
    if dists:
        rest = [logp[j, :len(r) - 1] for j, r in enumerate(responses)] if width_r > 1 else [first[:0]] * n_rows
        return total, [torch.cat([first[int(k)][None], d]) for k, d in zip(owner, rest)]
    if tokens:
        return total, [torch.cat([heads[j:j + 1], token_logp[j, :len(r) - 1] if width_r > 1 else heads[:0]])
                       for j, r in enumerate(responses)]
    return (total, frozen) if capture_layer is not None else total


# ----------------------------------------------------------------------------- frozen lower layers


@dataclass
class Frozen:
    """The hidden states entering decoder layer ``start`` for one `Group`, from a full forward.

    When an adapter touches only the layers from ``start`` up, the layers below compute the same
    states whatever its weights, so training can keep them (`prefix_shared_logps` with
    ``capture_layer``) and run only the top layers (`frozen_logps`).

    Args:
        prompt (`torch.Tensor`): ``(len(prompt), hidden)``, one row per prompt token.
        responses (`list[torch.Tensor]`): per response ``(len(response) - 1, hidden)``: the states of
            its tokens but the last (the inputs that predict the next token).
    """

    prompt: torch.Tensor
    responses: list[torch.Tensor]


def decoder_of(model):
    """The decoder stack (the module holding ``layers``) of a causal LM, a peft model or a wrapper."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    dec = m.get_decoder() if hasattr(m, "get_decoder") else getattr(m, "model", m)
    if not hasattr(dec, "layers"):
        raise TypeError(f"{type(m).__name__} has no decoder 'layers' to run from a frozen layer")
    return dec


@contextmanager
def top_layers(model, start: int):
    """Within the block, ``model`` runs only decoder layers ``start:`` and takes ``inputs_embeds`` as
    the states entering layer ``start``. Layer indices (the KV-cache slots) are renumbered from 0
    and restored on exit; the parameters are the same objects (an optimizer keeps working)."""
    dec = decoder_of(model)
    layers = dec.layers
    if not 0 <= start < len(layers):
        raise ValueError(f"start layer {start} is outside 0..{len(layers) - 1}")
    kept = list(layers)[start:]
    old_idx = [layer.self_attn.layer_idx for layer in kept]
    dec.layers = torch.nn.ModuleList(kept)
    for i, layer in enumerate(kept):
        layer.self_attn.layer_idx = i
    try:
        yield model
    finally:
        for layer, idx in zip(kept, old_idx):
            layer.self_attn.layer_idx = idx
        dec.layers = layers


def frozen_logps(model, groups: Sequence[Group], frozen: Sequence[Frozen], *, pad_id: int, start: int,
                 prompt_grad: bool = True, dists: bool = False, tokens: bool = False):
    """`prefix_shared_logps` from frozen states: only decoder layers ``start:`` run.

    Each prompt but its last token runs once (the "head", with its KV cache); each response runs as
    ``[last prompt token] + response[:-1]`` on that cache, so every response token's log-prob comes
    from this call. ``prompt_grad=False`` runs the head without autograd (its keys and values still
    come from the current weights; gradients flow through the response rows only).

    Args:
        model: the causal LM (or peft model) whose layers below ``start`` produced ``frozen``.
        groups, frozen: the token ids (for the targets) and the matching `Frozen` states.
        pad_id: the id used for padding. start: the first layer to run.

        dists (`bool`): also return each response's ``(len(response), vocab)`` log-prob distributions,
            as `prefix_shared_logps` does.
        tokens (`bool`): also return each response's per-token log-probs, ``(len(response),)``.

    Returns:
        A float32 tensor of ``sum(len(g.responses))`` summed log-probs, in order; with ``dists`` or
        ``tokens``, the pair ``(logps, list[Tensor])``.
    """
    if dists and tokens:
        raise ValueError("dists and tokens cannot be combined")
    if len(groups) != len(frozen):
        raise ValueError(f"{len(groups)} groups but {len(frozen)} frozen states")
    for k, (g, f) in enumerate(zip(groups, frozen)):
        if len(g.prompt) < 2:
            raise ValueError(f"group {k}: frozen scoring needs a prompt of at least 2 tokens")
        if f.prompt.shape[0] != len(g.prompt) or len(f.responses) != len(g.responses) or any(
                h.shape[0] != len(r) - 1 for h, r in zip(f.responses, g.responses)):
            raise ValueError(f"group {k}: the frozen states do not match the token ids")
    device = model.device
    dtype = next(p for p in model.parameters()).dtype
    dtype = torch.float32 if dtype not in (torch.float32, torch.bfloat16, torch.float16) else dtype
    n_groups = len(groups)
    h_lens = torch.tensor([len(g.prompt) - 1 for g in groups])
    head, head_mask = _pad([f.prompt[:-1].float() for f in frozen], 0.0, left=True)
    head_pos = (head_mask.cumsum(-1) - 1).clamp(min=0)
    counts = torch.tensor([len(g.responses) for g in groups])
    owner = torch.repeat_interleave(torch.arange(n_groups), counts)
    responses = [r for g in groups for r in g.responses]
    tails = [torch.cat([frozen[int(k)].prompt[-1:], h]) for k, h in zip(owner, (h for f in frozen for h in f.responses))]
    tail, tail_mask = _pad([t.float() for t in tails], 0.0, left=False)
    targets, _ = _pad([torch.tensor(r) for r in responses], pad_id, left=False)
    width_r = tail.shape[1]
    mask = torch.cat([head_mask[owner], tail_mask], dim=1)
    pos = h_lens[owner][:, None] + torch.arange(width_r)[None, :]
    with top_layers(model, start):
        with torch.set_grad_enabled(prompt_grad and torch.is_grad_enabled()):
            out = model(inputs_embeds=head.to(device, dtype), attention_mask=head_mask.to(device),
                        position_ids=head_pos.to(device), use_cache=True, logits_to_keep=1)
        cache = out.cache
        cache.batch_select_indices(owner.to(device))
        logits = model(inputs_embeds=tail.to(device, dtype), attention_mask=mask.to(device),
                       position_ids=pos.to(device), cache=cache, use_cache=True).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logp = logp.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1)
    total = (token_logp * tail_mask.to(device, dtype=token_logp.dtype)).sum(-1)
    if dists:
        return total, [logp[j, :len(r)] for j, r in enumerate(responses)]
    if tokens:
        return total, [token_logp[j, :len(r)] for j, r in enumerate(responses)]
    return total
