"""How well does the untuned base model, told the style outright, separate chosen from rejected?

This is the signal behind ``alignx train --distill_weight``. On the train side of a split, one
record per distinct (prompt, chosen, rejected) triple, it scores both responses after the task
with three system messages: none, the record's own ``ground_truth_persona`` ("own") and another
user's ("other"). It prints the likelihood accuracy of each, and the accuracy of the log-prob
shifts that compare two of them: ``own - none`` is the shift that telling the style brings,
``own - other`` is the part that depends on which style. Then, for the teacher that
``--distill_alpha A`` trains towards, ``(1 + A) own - A other``, the accuracy with the true style
and with the other style (the swapped-persona figure). The held-out side is never read.

    python scripts/style_teacher_accuracy.py --data friendly_unfriendly.json \\
        --split psoups_friendly_unfriendly --alpha 0 0.5 1 2
"""

from __future__ import annotations

import argparse
import json
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignx.backbone import embedded_model_dir
from alignx.learn.split import split_indices
from alignx.logprobs import Group, prefix_shared_logps
from alignx.schema import load_records


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="records with ground_truth_persona (P-SOUPS)")
    ap.add_argument("--split", help="a split in assets/splits: only its train side is read")
    ap.add_argument("--alpha", type=float, nargs="*", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch_size", type=int, default=8)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    records = load_records(args.data)
    side = split_indices(args.split, records)[0] if args.split else range(len(records))
    seen, sub = set(), []
    for i in side:
        r = records[i]
        if r.ground_truth_persona and (r.prompt, r.chosen, r.rejected) not in seen:
            seen.add((r.prompt, r.chosen, r.rejected))
            sub.append(r)
    styles = sorted({r.ground_truth_persona for r in sub})
    if len(styles) < 2:
        raise SystemExit("the records need at least two ground_truth_persona styles")
    path = embedded_model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rng = random.Random(0)
    other = {id(r): rng.choice([s for s in styles if s != r.ground_truth_persona]) for r in sub}

    def prompt_ids(system, task):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": task}]
        return list(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False))

    scores = {}
    for cond in ("none", "own", "other"):
        out = []
        for j in range(0, len(sub), args.batch_size):
            groups = []
            for r in sub[j:j + args.batch_size]:
                system = {"none": None, "own": r.ground_truth_persona, "other": other[id(r)]}[cond]
                responses = [tok(text=x + tok.eos_token)["input_ids"] for x in (r.chosen, r.rejected)]
                groups.append(Group(prompt_ids(system, r.prompt), responses))
            with torch.no_grad():
                lp = prefix_shared_logps(model, groups, pad_id=tok.pad_token_id or 0)
            out.append(torch.stack([lp[0::2], lp[1::2]], dim=1))
        scores[cond] = torch.cat(out)  # (n, 2): chosen, rejected

    def margin(a, b):
        return (scores[a][:, 0] - scores[b][:, 0]) - (scores[a][:, 1] - scores[b][:, 1])

    acc = lambda x: round(float((x > 0).float().mean()), 4)
    report = {"n_triples": len(sub),
              "likelihood": {c: acc(scores[c][:, 0] - scores[c][:, 1]) for c in scores},
              "shift": {f"{a}-{b}": acc(margin(a, b)) for a, b in (("own", "none"), ("own", "other"),
                                                                   ("other", "none"))},
              "teacher": {}}
    for alpha in args.alpha:  # the teacher's shift over no style, under the true and the other style
        true = margin("own", "none") + alpha * margin("own", "other")
        swapped = margin("other", "none") - alpha * margin("own", "other")
        report["teacher"][str(alpha)] = {"true": acc(true), "swapped": acc(swapped)}
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
