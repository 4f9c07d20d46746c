"""The Preferences tab: 90 sliders (the preference distribution), grouped in the five groups, with
a name filter, reset, presets, "Derive from persona", "Infer from persona" (with a confidence per
dimension) and a live preview of the exact PBA profile. Also the ``/infer`` API endpoint."""

from __future__ import annotations

import json

import gradio as gr

from alignx import personas, preferences
from alignx.compare import parse_persona, parse_vector
from alignx.preferences import DIMENSIONS, GROUPS, N_DIMS, NEUTRAL
from alignx.session import Session
from alignx.ui.common import PRIVATE, QUIET, AppContext, View, shows_errors

NEUTRAL_PRESET = "__neutral__"
INFER_METHOD = "inferred"
CONFIDENCE_HEADERS = ["dim", "value", "confidence", "reading"]
MARKS = {"positive": "▲ positive", "neutral": "● neutral", "negative": "▼ negative"}


def slider_info(index: int, value: float) -> str:
    """The live reading under a slider: positive / negative with its profile label, or neutral."""
    status, label = preferences.dimension_status(index, float(value))
    return f"{MARKS[status]}: “{label}”" if label else f"{MARKS[status]}: left out of the profile"


def inferred_info(index: int, value: float, confidence: float) -> str:
    """The reading under a slider just set by inference: the usual reading plus the confidence."""
    return f"{slider_info(index, value)} · inferred, confidence {confidence:.2f}"


def confidence_rows(vector, confidence) -> list[list]:
    """One row per dimension: index, value, confidence and reading; the dimensions the profile
    names come first, each part by confidence, highest first."""
    rows = []
    for d in DIMENSIONS:
        status, label = preferences.dimension_status(d.index, float(vector[d.index]))
        rows.append([d.index, round(float(vector[d.index]), 3), round(float(confidence[d.index]), 3),
                     f"{status}: {label}" if label else f"neutral ({d.name})"])
    return sorted(rows, key=lambda r: (r[3].startswith("neutral"), -r[2]))


def infer_api(persona: str) -> tuple[str, str, str]:
    """Infer a preference vector from a persona's texts (alignx.explore.inference).

    Args:
        persona: the persona as AlignX JSON (pairs, UGC comments, demographic text; item directions are ignored).

    Returns:
        The vector (JSON list of 90 numbers in [0, 1]), its PBA profile, and the per-dimension
        confidences (JSON list of 90 numbers in [0, 1]).
    """
    vector, confidence = personas.derive(parse_persona(persona), INFER_METHOD)
    if vector is None:
        raise ValueError("Persona: nothing to infer from; give it pairs, UGC comments or a demographic description.")
    return vector_text(vector), preferences.profile_from_vector(vector), json.dumps(confidence)


# gr.api types the endpoint from the annotations, and this module postpones them (strings).
infer_api.__annotations__ = {"persona": str, "return": tuple[str, str, str]}


def shown(value: float) -> float:
    """A slider's displayed value: 3 decimals. The session keeps the exact value (e.g. the
    float32 mean 0.6666667), and the reading under the slider and the profile use that."""
    return round(float(value), 3)


def vector_text(vector) -> str:
    return json.dumps([round(float(v), 10) for v in vector])


def summary_text(vector: str) -> str:
    s = preferences.summarize_vector(parse_vector(vector))
    text = (f"{s['positive']} positive · {s['negative']} negative · {s['neutral']} neutral "
            "(≥ 0.6 positive, ≤ 0.4 negative; 0.4 itself reads neutral)")
    if s["fallback"]:
        text += ". Every dimension is neutral, so the official fallback keeps the extreme furthest from 0.5."
    return text


def profile_text(vector: str) -> str:
    """The exact profile PBA sees for a preference vector.

    Args:
        vector: 90 numbers in [0, 1], as a JSON list.
    """
    return preferences.profile_from_vector(parse_vector(vector))


def matches(dim: preferences.Dimension, query: str) -> bool:
    q = query.strip().lower()
    return not q or any(q in s.lower() for s in (dim.name, dim.positive_label, dim.negative_label, str(dim.index)))


def build_preferences(ctx: AppContext, state: gr.State) -> View:
    start = ctx.defaults.vector
    gr.Markdown("Each slider is one entry of the preference distribution PBA bridges through: "
                "≥ 0.6 reads **positive** (its positive label goes in the profile), ≤ 0.4 "
                "**negative**, anything between is left out.")
    with gr.Row():
        preset = gr.Dropdown([("All neutral (0.5)", NEUTRAL_PRESET)] + [(personas.title(n), n) for n in ctx.examples],
                             value=None, label="Preset (an example persona's directions)", scale=2)
        method = gr.Dropdown(list(personas.DERIVERS), value="directions", scale=1,
                             label="Derive with", info="the persona's own directions; inference methods plug in here")
        with gr.Column(scale=1):
            derive = gr.Button("Derive from persona", elem_id="derive")
            infer = gr.Button("Infer from persona", elem_id="infer", variant="primary")
            reset = gr.Button("Reset (all 0.5)", elem_id="reset")
    profile = gr.Textbox(profile_text(vector_text(start)), label="Profile PBA will see (exact text)", lines=3,
                         interactive=False, buttons=["copy"], elem_id="profile-preview")
    counts = gr.Markdown(summary_text(vector_text(start)))
    with gr.Accordion("Confidence of the last inference", open=False, elem_id="confidence-accordion") as conf_acc:
        gr.Markdown("Set by *Infer from persona* (or *Derive* with `inferred`): P(the reading) × support, "
                    "where support says how much the persona's texts look like the inference head's "
                    "training data (P-SOUPS friendly / unfriendly). Low confidence: check those sliders.")
        confidences = gr.Dataframe(headers=CONFIDENCE_HEADERS, datatype=["number", "number", "number", "str"],
                                   column_widths=["8%", "10%", "12%", "70%"],
                                   interactive=False, elem_id="confidences", max_height=320)
    query = gr.Textbox(label="Filter dimensions", placeholder="name or label, e.g. humor, need, 73",
                       elem_id="slider-filter")
    sliders, groups = [None] * N_DIMS, []
    for group in GROUPS:
        dims = preferences.dimensions_in_group(group)
        with gr.Accordion(f"{group} ({len(dims)})", open=group == GROUPS[0]) as acc:
            with gr.Row():
                for d in dims:
                    sliders[d.index] = gr.Slider(0, 1, value=shown(start[d.index]), step=0.01,
                                                 label=f"{d.index}. {d.name}",
                                                 info=slider_info(d.index, start[d.index]), min_width=300,
                                                 elem_id=f"dim-{d.index}", elem_classes=["dim-slider"])
        groups.append((acc, [d.index for d in dims]))
    with gr.Accordion("The vector as JSON", open=False):
        vector_json = gr.Textbox(vector_text(start), label="Preference vector (90 numbers): the `compare` and "
                                 "`profile` input", interactive=False, lines=2, elem_id="vector-json")
        pasted = gr.Textbox(label="Paste a vector (a JSON list of 90 numbers in [0, 1])", lines=2)
        set_pasted = gr.Button("Set the sliders to this vector", size="sm")

    def slider_updates(vector) -> list:
        return [gr.update(value=shown(v), info=slider_info(i, v)) for i, v in enumerate(vector)]

    def fill(session: Session) -> list:
        return [*slider_updates(session.vector), vector_text(session.vector)]

    def with_vector(session: Session, vector) -> list:
        session = session.copy(vector=vector)
        return [session, *fill(session)]

    # Handlers
    def set_dimension(index: int):
        def handler(session: Session, value: float):
            vector = list(session.vector)
            vector[index] = float(value)
            session = session.copy(vector=vector)
            return session, gr.update(info=slider_info(index, value)), vector_text(vector)
        return handler

    @shows_errors
    def apply_preset(session: Session, name):
        if name == NEUTRAL_PRESET:
            return with_vector(session, [NEUTRAL] * N_DIMS)
        if name not in ctx.examples:
            raise ValueError("Pick a preset first.")
        return with_vector(session, personas.derive_vector(ctx.examples[name]))

    @shows_errors
    def derive_from_persona(session: Session, method_name):
        method_name = method_name or "directions"
        vector, confidence = personas.derive(session.persona_obj(), method_name)
        if vector is None and method_name == INFER_METHOD:
            raise ValueError("This persona has no texts to infer from: add pairs, UGC comments or a "
                             "demographic description on the Persona tab.")
        if vector is None:
            raise ValueError("This persona carries no preference directions (neither its own nor on its "
                             "items), so there is nothing to derive: add directions to its items on the "
                             "Persona tab, or set the sliders by hand.")
        if confidence is None:
            gr.Info(f"Sliders set from the persona ({method_name}).")
            return [*with_vector(session, vector), gr.skip(), gr.skip()]
        gr.Info(f"Sliders set by inference ({method_name}); the confidences are under the profile.")
        if method_name == INFER_METHOD:
            from alignx.explore import inference

            cut = inference.truncated_texts(session.persona_obj())
            if cut:
                gr.Warning(f"{cut} of the persona's texts are longer than the inference encoder reads: only "
                           f"their first {inference.MAX_TOKENS} tokens were used.")
        session = session.copy(vector=vector)
        sliders_out = [gr.update(value=shown(v), info=inferred_info(i, v, c))
                       for i, (v, c) in enumerate(zip(vector, confidence))]
        return [session, *sliders_out, vector_text(vector), confidence_rows(vector, confidence), gr.update(open=True)]

    @shows_errors
    def apply_pasted(session: Session, text):
        if not (text or "").strip():
            raise ValueError("Paste a JSON list of 90 numbers in [0, 1] first.")
        return with_vector(session, parse_vector(text))

    def filter_dims(q: str):
        visible = [matches(d, q or "") for d in DIMENSIONS]
        searching = bool((q or "").strip())
        accordions = [gr.update(visible=any(visible[i] for i in idx), **({"open": True} if searching else {}))
                      for _, idx in groups]
        return [*accordions, *(gr.update(visible=v) for v in visible)]

    # Register listeners
    vector_outputs = [state, *sliders, vector_json]
    for i, s in enumerate(sliders):
        s.input(set_dimension(i), [state, s], [state, s, vector_json], trigger_mode="always_last",
                show_progress="hidden", **PRIVATE)
    preset.input(apply_preset, [state, preset], vector_outputs, **QUIET)
    derive.click(derive_from_persona, [state, method], [*vector_outputs, confidences, conf_acc], **QUIET)
    infer.click(lambda session: derive_from_persona(session, INFER_METHOD), state,
                [*vector_outputs, confidences, conf_acc], **QUIET)
    gr.api(shows_errors(infer_api), api_name="infer", concurrency_id="infer", concurrency_limit=1)
    reset.click(lambda session: with_vector(session, [NEUTRAL] * N_DIMS), state, vector_outputs, **QUIET)
    set_pasted.click(apply_pasted, [state, pasted], vector_outputs, **QUIET)
    # .change, not .input: Gradio's textbox fires no input event when text is deleted.
    query.change(filter_dims, query, [acc for acc, _ in groups] + sliders, trigger_mode="always_last", **QUIET)
    vector_json.change(shows_errors(profile_text), vector_json, profile, api_name="profile", show_progress="hidden")
    vector_json.change(shows_errors(summary_text), vector_json, counts, **QUIET)

    return View(outputs=[*sliders, vector_json], fill=fill, components={"vector_json": vector_json})
