"""How well does the untuned base model, told the style outright, separate chosen from rejected?

This is the signal behind ``alignx train --distill_weight``. On the train side of a split, one
record per distinct (prompt, chosen, rejected) triple, it scores both responses under the
teacher's three prompts (`alignx.learn.train.teacher_prompts`): told the record's own
``ground_truth_persona`` ("own"), told another user's ("other"), and told none ("none"), and under
the evaluation's reference, the ICA prompt with the whole persona. ``--context`` is the trainer's
``--distill_context``: the style goes before the task alone (``task``), before the system sentence
of the ``--method`` prompt (``policy``), or before that of the ICA reference prompt
(``reference``). It prints:
- the likelihood accuracy of each prompt;
- the accuracy of the log-prob shifts that compare two of them: ``own - none`` is the shift that
  telling the style brings, ``own - other`` the part that depends on which style;
- ``teacher``: for the teacher that ``--distill_alpha A`` trains towards, ``(1 + A) own - A
  other``, its shift over ``none`` with the true style and with the other style (the
  swapped-persona figure): what a policy whose log-ratio is that shift would score;
- ``against_reference``: the same teacher scored against the ICA reference, as ``alignx eval``
  scores a policy: what a policy that IS the teacher would score.

The held-out side is never read.

    python scripts/style_teacher_accuracy.py --data friendly_unfriendly.json \\
        --split psoups_friendly_unfriendly --context policy --alpha 0 0.5 1 2
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignx.backbone import embedded_model_dir
from alignx.learn.split import split_indices
from alignx.learn.train import DISTILL_CONTEXTS, teacher_prompts
from alignx.logprobs import Group, prefix_shared_logps
from alignx.prompts import build_prompt
from alignx.schema import load_records


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="records with ground_truth_persona (P-SOUPS)")
    ap.add_argument("--split", help="a split in assets/splits: only its train side is read")
    ap.add_argument("--alpha", type=float, nargs="*", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--context", choices=list(DISTILL_CONTEXTS), default="task",
                    help="task: the style before the task alone ('none': the task alone); policy: before the system "
                         "sentence of the --method prompt ('none': that prompt); reference: before the system sentence "
                         "of the ICA prompt with the whole persona ('none': that prompt)")
    ap.add_argument("--method", choices=["ica", "pba"], default="ica",
                    help="the policy prompt of --context policy: ICA with the whole persona, or PBA with the profile")
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
    ica = [build_prompt("ica", r.prompt, persona=r.persona, style="chat", tokenizer=tok) for r in sub]
    policy = ica if args.method == "ica" else [build_prompt("pba", r.prompt, profile=r.profile, style="chat",
                                                            tokenizer=tok) for r in sub]
    rows = [{"task": r.prompt, "style": r.ground_truth_persona, "method": args.method, "prompt": p, "ref_prompt": q}
            for r, p, q in zip(sub, policy, ica)]
    prompts = dict(zip(("own", "other", "none"), zip(*teacher_prompts(rows, tok, seed=0, context=args.context,
                                                                      template="chat"))))
    prompts["reference"] = tuple(ica)  # the evaluation's reference: the ICA prompt, whole persona

    scores = {}
    for cond in ("reference", "own", "other", "none"):
        same = next((c for c in scores if prompts[c] == prompts[cond]), None)
        if same:  # the same prompts as a condition already scored
            scores[cond] = scores[same]
            continue
        out = []
        for j in range(0, len(sub), args.batch_size):
            groups = [Group(list(tok(text=prompts[cond][i])["input_ids"]),
                            [tok(text=x + tok.eos_token)["input_ids"] for x in (r.chosen, r.rejected)])
                      for i, r in enumerate(sub[j:j + args.batch_size], start=j)]
            with torch.no_grad():
                lp = prefix_shared_logps(model, groups, pad_id=tok.pad_token_id or 0)
            out.append(torch.stack([lp[0::2], lp[1::2]], dim=1))
        scores[cond] = torch.cat(out)  # (n, 2): chosen, rejected

    def margin(a, b):
        return (scores[a][:, 0] - scores[b][:, 0]) - (scores[a][:, 1] - scores[b][:, 1])

    acc = lambda x: round(float((x > 0).float().mean()), 4)
    report = {"n_triples": len(sub), "context": args.context, "method": args.method,
              "likelihood": {c: acc(scores[c][:, 0] - scores[c][:, 1]) for c in scores},
              "shift": {f"{a}-{b}": acc(margin(a, b)) for a, b in (("own", "none"), ("own", "other"),
                                                                   ("other", "none"))},
              "teacher": {}}
    for alpha in args.alpha:  # the teacher's shift over no style, under the true and the other style
        true = margin("own", "none") + alpha * margin("own", "other")
        swapped = margin("other", "none") - alpha * margin("own", "other")
        report["teacher"][str(alpha)] = {"true": acc(true), "swapped": acc(swapped)}
    report["against_reference"] = {}
    for alpha in args.alpha:  # a policy that IS the teacher, scored as the evaluation scores it
        true = margin("own", "reference") + alpha * margin("own", "other")
        swapped = margin("other", "reference") - alpha * margin("own", "other")
        report["against_reference"][str(alpha)] = {"true": acc(true), "swapped": acc(swapped)}
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
