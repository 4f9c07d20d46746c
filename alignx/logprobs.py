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
"""

from __future__ import annotations

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


def prefix_shared_logps(model, groups: Sequence[Group], *, pad_id: int, route: bool = False) -> torch.Tensor:
    """Summed log p(response | prompt) for every response of every group, in order.

    Args:
        model: a causal LM (or a peft model wrapping one).
        groups: the prompts and their responses.
        pad_id: the id used for padding (masked out; any valid id works).
        route: pass each row's ``Group.adapter`` as peft's ``adapter_names``.

    Returns:
        A float32 tensor of ``sum(len(g.responses))`` values, differentiable when grad is enabled.
    """
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
    width_p = int(p_lens.max())
    prompt_ids = torch.full((n_groups, width_p), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((n_groups, width_p), dtype=torch.long)
    for k, g in enumerate(groups):  # left padding: every prompt ends at the same column
        prompt_ids[k, width_p - len(g.prompt):] = torch.tensor(g.prompt)
        prompt_mask[k, width_p - len(g.prompt):] = 1
    prompt_pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"adapter_names": [g.adapter or "__base__" for g in groups]} if route else {}
    out = model(input_ids=prompt_ids.to(device), attention_mask=prompt_mask.to(device),
                position_ids=prompt_pos.to(device), use_cache=True, logits_to_keep=1, **extra)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (groups, vocab): each first response token
    cache = out.cache

    counts = torch.tensor([len(g.responses) for g in groups])
    owner = torch.repeat_interleave(torch.arange(n_groups), counts)  # response row -> its group
    cache.batch_select_indices(owner.to(device))
    responses = [r for g in groups for r in g.responses]
    n_rows = len(responses)
    r_lens = torch.tensor([len(r) for r in responses])
    width_r = int(r_lens.max())
    resp_ids = torch.full((n_rows, width_r), pad_id, dtype=torch.long)
    for j, r in enumerate(responses):  # right padding: pads come after the real tokens
        resp_ids[j, :len(r)] = torch.tensor(r)
    resp_mask = (torch.arange(width_r)[None, :] < r_lens[:, None]).long()
    mask = torch.cat([prompt_mask[owner], resp_mask], dim=1)
    pos = p_lens[owner][:, None] + torch.arange(width_r)[None, :]
    total = first[owner.to(device), resp_ids[:, 0].to(device)]
    if width_r > 1:
        extra = {"adapter_names": [groups[int(k)].adapter or "__base__" for k in owner]} if route else {}
        # position t predicts token t + 1; the last position predicts nothing
        logits = model(input_ids=resp_ids[:, :-1].to(device), attention_mask=mask[:, :-1].to(device),
                       position_ids=pos[:, :-1].to(device), cache=cache, use_cache=True, **extra).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        targets = resp_ids[:, 1:].to(device)
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        keep = resp_mask[:, 1:].to(device, dtype=token_logp.dtype)
        total = total + (token_logp * keep).sum(-1)
    return total
