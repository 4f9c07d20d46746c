"""The `alignx` command line. Each subcommand parses its arguments and calls one library function.

Examples:

    echo '[[1,0.5,...], [1,0,...]]' | alignx profile          # directions -> profile line
    echo 'Young, Likes humor' | alignx profile --parse        # profile line -> 90-vector JSON
    alignx generate --method all --persona assets/personas/x.json --prompt "Any tips for running?"
    alignx infer --persona assets/personas/x.json [--json]   # persona texts -> vector + profile
    alignx privacy export --annotator Ada --out ada.json      # everything stored under a name
    alignx privacy delete --annotator Ada --yes               # ... and delete it
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """An error to print as one clear line, with exit code 2."""


# ----------------------------------------------------------------------------- profile


def cmd_profile(args: argparse.Namespace) -> int:
    from alignx import preferences

    text = sys.stdin.read()
    if args.parse:
        try:
            vector = preferences.parse_profile(text.strip())
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
        print(json.dumps([float(v) for v in vector]))
        return 0
    try:
        directions = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"stdin is not JSON: {exc}") from exc
    if not isinstance(directions, list) or not directions:
        raise CLIError("stdin must be a non-empty JSON list of 90-dim direction vectors")
    if all(isinstance(v, (int, float)) for v in directions):
        directions = [directions]  # a single vector is accepted too
    try:
        vectors = [preferences.validate_vector(v, what=f"direction {i}") for i, v in enumerate(directions)]
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    print(preferences.get_profile(vectors))
    return 0


# ----------------------------------------------------------------------------- generate


# Kept here so building the parser imports no torch; a test checks they match the backbone's.
PRECISIONS = ("auto", "fp32", "bf16", "int8", "nf4")


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--model", default="embedded", help="'embedded' (default), a HF model id or a local folder")
    g.add_argument("--gguf-file", default=None, help="GGUF file inside --model, if it is a GGUF repo or folder")
    g.add_argument("--precision", default="auto", choices=PRECISIONS, help="default: nf4 when bitsandbytes is installed")
    g.add_argument("--adapter", action="append", metavar="NAME=FOLDER",
                   help="attach a LoRA adapter (repeatable); names ica and pba serve those methods")
    g.add_argument("--template", default="auto", choices=("auto", "official-eval", "chat"))
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def backbone_config_from_args(args: argparse.Namespace):
    from alignx.backbone import BackboneConfig, check_adapter_dir, parse_adapter_specs

    try:
        adapters = parse_adapter_specs(args.adapter)
        for folder in adapters.values():  # before the slow model load: safetensors LoRA folders only
            check_adapter_dir(folder)
    except (OSError, ValueError) as exc:
        raise CLIError(f"--adapter: {exc}") from exc
    return BackboneConfig(model=args.model, gguf_file=args.gguf_file, precision=args.precision,
                          adapters=adapters, template=args.template, device=args.device)


def cmd_generate(args: argparse.Namespace) -> int:
    from alignx import preferences, schema
    from alignx.backbone import METHODS, load_backbone

    methods = list(METHODS) if args.method == "all" else [args.method]
    persona = schema.Persona()
    if args.persona:
        try:
            persona = schema.load_persona(args.persona)
        except (OSError, ValueError) as exc:
            raise CLIError(str(exc)) from exc
    if "ica" in methods and not (persona.ugc or persona.pairs or persona.demographics):
        raise CLIError("ICA needs a persona: pass --persona FILE.json with UGC, pairs or demographics")
    profile = args.profile
    if "pba" in methods and profile is None:
        profile = persona.profile()
        if profile is None:
            raise CLIError("PBA needs a profile: pass --profile TEXT, or a persona with a 'Preference "
                           "Direction' or items that carry one")
    if profile is not None:
        try:
            preferences.parse_profile(profile)
        except ValueError as exc:
            raise CLIError(f"--profile: {exc}") from exc
    try:
        backbone = load_backbone(backbone_config_from_args(args))
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    prompts, adapters = backbone.compare_batch(args.prompt, persona=persona, profile=profile, methods=methods)
    texts = backbone.generate(prompts, adapters, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    if args.json:
        out = {
            "backbone": backbone.info(),
            "settings": {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                         "top_p": args.top_p, "seed": args.seed},
            "profile": profile,
            "outputs": [{"method": m, "adapter": a, "prompt": p, "text": t}
                        for m, a, p, t in zip(methods, adapters, prompts, texts)],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for m, a, t in zip(methods, adapters, texts):
            print(f"=== {m.upper()} ({'adapter ' + a if a else 'no adapter'}) ===\n{t.strip()}\n")
    return 0


# ----------------------------------------------------------------------------- infer


def cmd_infer(args: argparse.Namespace) -> int:
    from alignx import preferences, schema
    from alignx.explore import inference

    try:
        persona = schema.load_persona(args.persona)
        head = inference.Head.load(args.head) if args.head else None
        result = inference.infer(persona, head=head)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc
    if result is None:
        raise CLIError(f"{args.persona}: nothing to infer from: the persona has no pairs, UGC comments or "
                       "demographic text")
    if result.truncated:
        print(f"warning: {result.truncated} of the persona's texts are longer than the inference encoder reads; "
              f"only their first {inference.MAX_TOKENS} tokens were used", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(f"profile: {result.profile}")
    print(f"support: {result.support:.2f} (how much the persona's texts look like the data the head was "
          f"trained on; {result.evidence['pairs']} pairs, {result.evidence['ugc']} UGC, "
          f"{result.evidence['demographics']} demographic text)")
    print("vector: " + json.dumps([round(v, 4) for v in result.vector]))
    print("confidence: " + json.dumps(result.confidence))
    print(f"{'dim':>3}  {'value':>5}  {'conf':>4}  reading")
    for d in preferences.DIMENSIONS:
        status, label = preferences.dimension_status(d.index, result.vector[d.index])
        if label:
            print(f"{d.index:>3}  {result.vector[d.index]:5.3f}  {result.confidence[d.index]:4.2f}  {status}: {label}")
    return 0


# ----------------------------------------------------------------------------- privacy


def cmd_privacy(args: argparse.Namespace) -> int:
    from alignx import privacy, store

    db = args.db or store.default_path()
    if not Path(db).expanduser().is_file():
        raise CLIError(f"no alignx store at {db} (pass --db FILE or set $ALIGNX_DB)")
    try:
        if args.action == "export":
            data = privacy.export_user(db, args.annotator)
            if args.out is None:
                print(json.dumps(data, indent=2, ensure_ascii=False))
            else:
                privacy.write_export(db, args.annotator, args.out)
                print(f"wrote {len(data['choices'])} choices, {len(data['adapters'])} adapters and "
                      f"{'the' if data['identity'] else 'no'} identity of {data['annotator']!r} to {args.out}")
            return 0
        if not args.yes:
            data = privacy.export_user(db, args.annotator)
            raise CLIError(f"this would delete {'the identity, ' if data['identity'] else ''}"
                           f"{len(data['choices'])} choices and {len(data['adapters'])} adapters of "
                           f"{data['annotator']!r}; add --yes to delete them")
        print(privacy.delete_text(privacy.delete_user(db, args.annotator)))
        return 0
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc


# ----------------------------------------------------------------------------- parser


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignx", description="User-level personalized alignment (AlignX).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="directions on stdin -> profile line (or the reverse with --parse)",
                       description="Read a JSON list of 90-dim direction vectors (one persona's history) on "
                                   "stdin and print the PBA profile line; with --parse, read a profile line "
                                   "and print its ternary 90-vector as JSON.")
    p.add_argument("--parse", action="store_true", help="parse a profile line instead")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("generate", help="generate with ICA, PBA, universal or all three in one batch",
                       description="Generate responses. --method all runs ICA, PBA and universal as three rows "
                                   "of one batched generate call.")
    p.add_argument("--method", default="all", choices=("ica", "pba", "universal", "all"))
    p.add_argument("--persona", type=Path, help="persona JSON file with AlignX keys")
    p.add_argument("--profile", help="PBA profile text (default: built from the persona's item directions)")
    p.add_argument("--prompt", required=True, help="the post / question to respond to")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_backbone_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("infer", help="infer a persona's 90-dim preference vector and profile from its texts",
                       description="Infer the preference vector (90 values in [0, 1]), a confidence per "
                                   "dimension and the PBA profile from a persona's pairs, UGC comments and "
                                   "demographic text (alignx.explore.inference; item directions are ignored).")
    p.add_argument("--persona", type=Path, required=True, help="persona JSON file with AlignX keys")
    p.add_argument("--head", type=Path, help="an inference head file (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("privacy", help="export or delete everything stored under an annotator name",
                       description="Personas, annotations and adapters stay in the local SQLite store "
                                   "($ALIGNX_DB). Export everything stored under an annotator name as JSON, or "
                                   "delete it (identity, choices, their generated pairs and adapters).")
    p.add_argument("action", choices=("export", "delete"))
    p.add_argument("--annotator", required=True, help="the annotator name")
    p.add_argument("--db", type=Path, help="the SQLite store (default: $ALIGNX_DB, else ~/.local/share/alignx)")
    p.add_argument("--out", type=Path, help="export: write the JSON here (default: print it)")
    p.add_argument("--yes", action="store_true", help="delete: really delete (without it, say what would go)")
    p.set_defaults(func=cmd_privacy)

    from alignx.explore import control
    from alignx.learn import evaluate as learn_evaluate
    from alignx.learn import train as learn_train

    learn_train.add_parser(sub)
    learn_evaluate.add_parser(sub)
    control.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as given (reports record it to rerun it)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"alignx {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
