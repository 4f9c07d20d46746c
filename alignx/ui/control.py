"""The Controllability tab: sweep dimensions of the session's persona and vector, see the output
grid, the measured effects and their plots, and download the report. Also the ``/control`` API
endpoint. The work is `alignx.explore.control.sweep`; the figures and files are
`alignx.explore.report`."""

from __future__ import annotations

import json
import tempfile

import gradio as gr
import pandas as pd

from alignx.compare import load, parse_persona, parse_vector
from alignx.explore import report
from alignx.explore.control import METHODS, sweep, sweep_settings
from alignx.preferences import DIMENSIONS
from alignx.session import Session
from alignx.ui.common import MODEL_QUEUE, QUIET, AppContext, View, shows_errors

DIMENSION_CHOICES = [f"{d.index} · {d.positive_label} / {d.negative_label}" for d in DIMENSIONS]
DEFAULT_DIMENSION = DIMENSION_CHOICES[73]  # Likes humor / Dislikes humor
PLOTS = {"probes": "Probe log-ratio shift", "margins": "Pair margins", "words": "Output length",
         "flips": "Flip rate"}
EFFECT_COLUMNS = ["target", "method", "labels", "value", "probe_shift", "mean_margin", "pair_accuracy", "words",
                  "flesch_reading_ease", "flip_rate", "n_pairs"]
GRID_COLUMNS = ["target", "method", "value", "pole", "prompt", "text", "words", "flesch_reading_ease"]
HELP = (
    "Set one or more preference dimensions to each value and measure what changes. **PBA** sees the profile "
    "of the session's vector with the dimension set to the value; **ICA** sees the session's persona edited "
    "for it (pair items that disagree with the pole get chosen and rejected exchanged, and the demographic "
    "text states the preference). Measured: the outputs (length, readability), the log-probability shift "
    "of pole-specific probe responses (the outputs at the lowest and highest value), and, with pairs, the "
    "share of pairs whose chosen-vs-rejected margin changes sign. Scores from an nf4 backbone move by up to "
    "~0.2 nats with the batch shape: pick fp32 in Settings for small effects. The report holds the model, "
    "adapters, seed, commit and settings, and the command that reruns it.")


def run_summary(result: dict) -> str:
    """One status line for a finished sweep."""
    c = result["config"]
    flips = [f"dim {e['target']} {e['method'].upper()}: {e['flip_rate']:.0%} of {e['n_pairs']} pairs flip"
             for e in result["effects"] if e["flip_rate"] is not None]
    return (f"Done in {c['seconds']:.1f} s: {len(result['grid'])} outputs, {len(result['probes'])} probe scores, "
            f"{len(result['pairs'])} pair margins. " + "; ".join(flips))


def build_control(ctx: AppContext, state: gr.State) -> View:
    gr.Markdown(HELP)
    with gr.Row():
        dims_box = gr.Dropdown(DIMENSION_CHOICES, value=[DEFAULT_DIMENSION], multiselect=True, scale=3,
                               allow_custom_value=True, label="Dimensions to sweep (or type an index or a label)",
                               elem_id="control-dims")
        values_box = gr.Textbox("0, 0.5, 1", label="Values (0 = negative pole, 1 = positive)", scale=1,
                                elem_id="control-values")
        methods_box = gr.CheckboxGroup(list(METHODS), value=["pba"], label="Methods", scale=1,
                                       elem_id="control-methods")
    prompts_box = gr.Textbox("\n".join(ctx.example_prompts[:1]), lines=3, label="Prompts (one per line)",
                             elem_id="control-prompts")
    with gr.Accordion("Benchmark pairs (for the flip rate) and the persona / vector swept", open=False):
        pairs_box = gr.Code("", language="json", lines=6, elem_id="control-pairs",
                            label='Pairs: JSON list of {"prompt", "chosen", "rejected"} (blank = none)')
        own_pairs = gr.Button("Use the persona's own pairs", size="sm")
        with gr.Row():
            persona_box = gr.Textbox("", lines=2, label="Persona JSON (blank = the session's, Persona tab)")
            vector_box = gr.Textbox("", lines=2, label="Vector JSON (blank = the session's, Preferences tab)")
    with gr.Row():
        max_new = gr.Slider(8, 256, value=32, step=8, label="Max new tokens", elem_id="control-max-new-tokens")
        seed_box = gr.Number(ctx.defaults.seed, precision=0, minimum=0, label="Seed")
        joint_box = gr.Checkbox(False, label="Move all dimensions together")
    run = gr.Button("Run sweep", variant="primary", elem_id="run-control")
    status = gr.Markdown("", elem_id="control-status")
    effects = gr.Dataframe(headers=EFFECT_COLUMNS, label="Measured effects (one row per target, method and value)",
                           interactive=False, wrap=True, elem_id="control-effects")
    plots = []
    for row in (list(PLOTS.items())[:2], list(PLOTS.items())[2:]):
        with gr.Row():
            plots += [gr.Plot(label=label, elem_id=f"control-plot-{name}") for name, label in row]
    grid = gr.Dataframe(headers=GRID_COLUMNS, label="Output grid", interactive=False, wrap=True,
                        elem_id="control-grid")
    files = gr.File(label="Report: standalone HTML page, result JSON (rerunnable), CSV tables",
                    file_count="multiple", interactive=False, elem_id="control-report")

    inputs = [persona_box, vector_box, dims_box, values_box, prompts_box, methods_box, pairs_box, max_new, seed_box,
              joint_box]

    # Handlers
    def settings_for(session: Session, persona, vector, dimensions, values, prompts, methods, pairs,
                     max_new_tokens, seed, joint) -> dict:
        """The sweep's validated settings; blank persona / vector boxes mean the session's."""
        persona_obj = parse_persona(persona) if (persona or "").strip() else session.persona_obj()
        vector_list = parse_vector(vector) if (vector or "").strip() else session.vector
        return sweep_settings(persona=persona_obj, vector=vector_list, dimensions=dimensions or [], values=values,
                              prompts=prompts, methods=methods or [], pairs=pairs, joint=bool(joint),
                              max_new_tokens=max_new_tokens, seed=seed)

    @shows_errors
    def check(session: Session, *values):
        """Cheap validation before queueing for the model."""
        settings_for(session, *values)
        return "Queued for the model…"

    @shows_errors
    def control(persona, vector, dimensions, values, prompts, methods, pairs, max_new_tokens, seed, joint,
                session: Session, progress=gr.Progress()):
        """Sweep preference dimensions and measure the effect (alignx.explore.control.sweep).

        Args:
            persona: AlignX persona JSON ("" = the session's). vector: 90 numbers in [0, 1] as JSON ("" = the session's).
            dimensions: dimensions to sweep: indices, labels or the tab's choices. values: e.g. "0, 0.5, 1".
            prompts: one per line. methods: "pba" and / or "ica". pairs: JSON list of {"prompt", "chosen",
                "rejected"} ("" = none). max_new_tokens, seed: decoding (greedy). joint: move all dimensions together.

        Returns:
            A status line, the effects table, four plots, the output grid and the report files.
        """
        settings = settings_for(session, persona, vector, dimensions, values, prompts, methods, pairs,
                                max_new_tokens, seed, joint)
        progress(0, desc="Getting the backbone…")
        backbone = load(ctx.models, session.backbone)
        result = sweep(backbone, **settings, progress=lambda stage, f: progress(f, desc=stage))
        figs = report.figures(result)
        paths = report.write_report(result, tempfile.mkdtemp(prefix="alignx-control-"))
        table = pd.DataFrame(report.effect_rows(result)).reindex(columns=EFFECT_COLUMNS)
        shown = pd.DataFrame(result["grid"]).reindex(columns=GRID_COLUMNS)
        return (run_summary(result), table, *(figs.get(name) for name in PLOTS), shown,
                [str(paths["html"]), str(paths["json"]), *map(str, paths["csv"])])

    def persona_pairs(session: Session) -> str:
        pairs = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in session.persona_obj().pairs]
        return json.dumps(pairs, ensure_ascii=False, indent=1) if pairs else ""

    # Register listeners
    checked = run.click(check, [state, *inputs], status, **QUIET)
    checked.success(control, [*inputs, state], [status, effects, *plots, grid, files], api_name="control",
                    show_progress="minimal", **MODEL_QUEUE)
    own_pairs.click(persona_pairs, state, pairs_box, **QUIET)

    return View()
