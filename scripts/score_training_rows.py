"""Does an adapter condition on the persona on the rows it was trained on?

Rebuilds the training rows of a run from its own arguments (same seed, augmentations and limit),
scores each with the adapter and with the base model on the same prompt (on the row's ICA prompt for
a run trained with ``--reference ica-prompt``, as in its training), and prints the DPO
implicit-reward accuracy per row kind, and for records with both an original and a swap row the
persona-swap study's directional rate. ``both_ways`` counts the rows whose (task, chosen,
rejected) triple is also in the rows the other way round, under another persona's profile. An
adapter blind to the persona gets at most the larger side of each such triple right; the script
prints that bound too.

    python scripts/score_training_rows.py runs/pba --config configs/recipes/cpu_smollm2.yaml \\
        --method pba --data friendly_unfriendly.json --split psoups_friendly_unfriendly \\
        --augment swap --limit 64

Everything after the adapter folder is the training command's arguments, plus ``--rows
validation`` to score the run's validation rows (``--validation_per_persona``) instead, and
``--per_row`` to list every row's log-ratios and response lengths, and ``--against FILE`` (the
output of an earlier ``--per_row`` run on the same rows, another adapter's) to add ``paired``: per
row kind, this adapter's accuracy minus that one's, row by row, with a standard error clustered by
triple. Two recipes scored on one validation slice differ far less in ``paired`` than their
separate standard errors suggest, since both are right or wrong on the same easy and hard triples.
Split by
kind, these give the two held-out figures in advance: the ``original`` accuracy is the true-persona
accuracy, and one minus the ``swap`` accuracy approximates the swapped-persona accuracy. Each
accuracy and the directional rate carry a standard error clustered by triple
(`alignx.learn.evaluate.clustered_stderr`): rows about one triple tend to be right or wrong together.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter, defaultdict

import torch
from peft import PeftModel

from alignx.learn import train
from alignx.learn.evaluate import clustered_stderr
from alignx.logprobs import Group, prefix_shared_logps

SECTIONS = ("***User Preferences***", "***Historical Behavior")


def triple_key(row: dict) -> tuple:
    task = row["prompt"]
    for marker in SECTIONS:
        task = task.split(marker)[0]
    return task, frozenset((row["chosen"], row["rejected"]))


def main(argv: list[str]) -> dict:
    if not argv or argv[0].startswith("-"):
        raise SystemExit(__doc__)
    adapter, *train_argv = argv
    which = "train"
    if "--rows" in train_argv:
        at = train_argv.index("--rows")
        which = train_argv[at + 1] if at + 1 < len(train_argv) else ""
        if which not in ("train", "validation"):
            raise SystemExit(f"--rows takes train or validation, not {which!r}")
        del train_argv[at:at + 2]
    against = None
    if "--against" in train_argv:
        at = train_argv.index("--against")
        if at + 1 >= len(train_argv):
            raise SystemExit("--against takes the JSON output of an earlier --per_row run")
        with open(train_argv[at + 1], encoding="utf-8") as f:
            against = json.load(f).get("rows")
        if not against:
            raise SystemExit(f"{train_argv[at + 1]}: no per-row figures; score that adapter with --per_row")
        del train_argv[at:at + 2]
        train_argv.append("--per_row")
    per_row = "--per_row" in train_argv
    if per_row:
        train_argv.remove("--per_row")
    args, training_args, _ = train.parse_args(train_argv)
    if which == "validation" and not args.validation_per_persona:
        raise SystemExit("--rows validation needs the run's --validation_per_persona")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model, tokenizer, source, _ = train.load_model(args, "cpu")
    rows, val_rows, _ = train.build_rows(args, tokenizer, train.prompt_style(args, source), training_args.seed)
    if which == "validation":
        rows = val_rows
    model = PeftModel.from_pretrained(model, adapter).eval()

    sides = defaultdict(Counter)  # triple -> how often each response is the chosen one
    for row in rows:
        sides[triple_key(row)][row["chosen"]] += 1
    both_ways = {k for k, c in sides.items() if len(c) > 1}

    def group(row: dict) -> Group:
        prompt = tokenizer(text=row["prompt"])["input_ids"]  # as TRL tokenizes: response + EOS after the prompt
        responses = [tokenizer(text=row["prompt"] + row[k] + tokenizer.eos_token)["input_ids"][len(prompt):]
                     for k in ("chosen", "rejected")]
        return Group(prompt, responses)

    def reference_group(row: dict, policy: Group) -> Group:
        """The reference's prompt: the row's ``ref_prompt`` (a run with ``--reference ica-prompt``, as
        its reference pass has it: the same response tokens after that prompt), else its own."""
        if "ref_prompt" not in row:
            return policy
        return Group(tokenizer(text=row["ref_prompt"])["input_ids"], policy.responses)

    margins = defaultdict(list)
    clusters = defaultdict(list)  # kind -> the triple of each margin
    record_triple = {}
    details = []  # with --per_row: each row's kind, log-ratios (nats) and response token counts
    policy_margin = defaultdict(dict)  # record -> kind -> the adapter's own chosen-minus-rejected log-prob
    for i in range(0, len(rows), 8):
        batch = rows[i:i + 8]
        groups = [group(r) for r in batch]
        with torch.no_grad():
            policy = prefix_shared_logps(model, groups, pad_id=0)
            with model.disable_adapter():
                reference = prefix_shared_logps(model, [reference_group(r, g) for r, g in zip(batch, groups)],
                                                pad_id=0)
        ratio = policy - reference
        own = (policy[0::2] - policy[1::2]).tolist()
        for j, (row, m, p) in enumerate(zip(batch, (ratio[0::2] - ratio[1::2]).tolist(), own)):
            margins[row["kind"]].append(m)
            clusters[row["kind"]].append(triple_key(row))
            if per_row:
                details.append({"record_index": row["record_index"], "kind": row["kind"],
                                "triple": triple_id(row),
                                "chosen_logratio": float(ratio[2 * j]), "rejected_logratio": float(ratio[2 * j + 1]),
                                "chosen_tokens": len(groups[j].responses[0]),
                                "rejected_tokens": len(groups[j].responses[1])})
            if triple_key(row) in both_ways:
                margins["both_ways"].append(m)
                clusters["both_ways"].append(triple_key(row))
            if row["kind"] in ("original", "swap"):
                policy_margin[row["record_index"]][row["kind"]] = p
                record_triple[row["record_index"]] = triple_key(row)
    out = {kind: {"n": len(v), "accuracy": sum(m > 0 for m in v) / len(v),
                  "accuracy_stderr_clustered": clustered_stderr([m > 0 for m in v], clusters[kind]),
                  "triples": len(set(clusters[kind])), "mean_margin_nats": sum(v) / len(v)}
           for kind, v in margins.items()}
    if both_ways:
        out["both_ways"]["persona_blind_max"] = sum(max(sides[k].values()) for k in both_ways)
    # the swap study's directional rate: does the policy's own chosen-vs-rejected margin fall when
    # the record's persona is swapped? (the swap row has the labels exchanged, hence the sum)
    both = [i for i, m in policy_margin.items() if len(m) == 2]
    moved = [policy_margin[i]["original"] + policy_margin[i]["swap"] for i in both]
    if moved:
        out["persona_swap"] = {"n": len(moved), "directional_rate": sum(x > 0 for x in moved) / len(moved),
                               "directional_rate_stderr_clustered": clustered_stderr(
                                   [x > 0 for x in moved], [record_triple[i] for i in both]),
                               "mean_margin_shift_nats": sum(moved) / len(moved)}
    if per_row:
        out["rows"] = details
    if against is not None:
        out["paired"] = paired_difference(details, against)
    return out


def triple_id(row: dict) -> str:
    """A short, stable id of the row's triple (`triple_key`), for the per-row figures."""
    task, responses = triple_key(row)
    return hashlib.sha1("\0".join([task, *sorted(responses)]).encode()).hexdigest()[:12]


def paired_difference(rows: list[dict], earlier: list[dict]) -> dict:
    """Per row kind: the accuracy of ``rows`` minus that of ``earlier`` on the same rows (matched by
    record and kind), with its standard error clustered by triple.

    Raises:
        SystemExit: the two do not hold the same rows.
    """
    def right(r: dict) -> int:
        return int(r["chosen_logratio"] - r["rejected_logratio"] > 0)

    before = {(r["record_index"], r["kind"]): r for r in earlier}
    now = {(r["record_index"], r["kind"]): r for r in rows}
    if before.keys() != now.keys() or any(before[k].get("triple", now[k]["triple"]) != now[k]["triple"] for k in now):
        raise SystemExit("--against: the earlier run scored other rows; give it the same rows (--rows, "
                         "--validation_per_persona, --augment, --limit, seed)")
    out = {}
    for kind in sorted({k for _, k in now}):
        keys = [k for k in now if k[1] == kind]
        diff = [right(now[k]) - right(before[k]) for k in keys]
        out[kind] = {"n": len(keys), "accuracy_difference": sum(diff) / len(diff),
                     "stderr_clustered": clustered_stderr(diff, [now[k]["triple"] for k in keys]),
                     "rows_better": sum(d > 0 for d in diff), "rows_worse": sum(d < 0 for d in diff)}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
