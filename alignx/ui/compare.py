"""The Compare tab: one prompt, three columns (ICA | PBA | universal) streamed together from ONE
batched generation, decoding settings, and the exact prompt each method received. Below, before and
after for one user: the PBA prompt on the base and with that user's own adapter (Annotate tab)."""

from __future__ import annotations

import gradio as gr

from alignx.compare import (describe, load, parse_request, stream_compare, stream_user_compare,
                            user_adapter_settings, user_adapters)
from alignx.session import METHODS, Session
from alignx.ui.common import MODEL_QUEUE, QUIET, AppContext, View, shows_errors

COLUMNS = {
    "ica": "ICA: sees the raw persona",
    "pba": "PBA: sees the slider profile",
    "universal": "Universal: sees no persona",
}


def status_line(backbone, step) -> str:
    adapters = ", ".join(f"{m.upper()} → {a or 'no adapter'}" for m, a in zip(METHODS, step.adapters))
    first = "…" if step.first_token_s is None else f"{step.first_token_s:.2f} s"
    state = f"done in {step.elapsed_s:.1f} s" if step.done else f"generating… {step.elapsed_s:.1f} s"
    return f"{describe(backbone)}  \n{adapters} · one batch of 3 · first token after {first} · {state}"


def build_compare(ctx: AppContext, state: gr.State, persona_json: gr.Code, vector_json: gr.Textbox) -> View:
    start = ctx.defaults
    with gr.Row():
        with gr.Column(scale=3):
            prompt_box = gr.Textbox(start.prompt, label="Prompt (the post all three methods answer)", lines=2,
                                elem_id="prompt")
            gr.Examples([[p] for p in ctx.example_prompts], inputs=[prompt_box], label="Example prompts")
        with gr.Column(scale=2):
            max_new = gr.Slider(8, 512, value=start.generation.max_new_tokens, step=8, label="Max new tokens",
                                elem_id="max-new-tokens")
            temp_slider = gr.Slider(0.0, 2.0, value=start.generation.temperature, step=0.05,
                                    label="Temperature (0 = greedy)")
            seed_box = gr.Number(start.seed, precision=0, minimum=0, label="Seed")
    with gr.Row():
        run = gr.Button("Compare", variant="primary", elem_id="run-compare", scale=3)
        stop = gr.Button("Stop", variant="stop", scale=1)
    status = gr.Markdown(label="Status",
                         value="The backbone loads in the background; the first comparison waits for it.",
                         elem_id="compare-status")
    with gr.Row(equal_height=True):
        outs = [gr.Textbox(start.outputs.get(m, ""), label=COLUMNS[m], lines=14, max_lines=30, interactive=False,
                           autoscroll=True, buttons=["copy"], elem_id=f"out-{m}") for m in METHODS]
    with gr.Accordion("Exact prompts each method received", open=False):
        shown = [gr.Textbox(label=f"{m.upper()} prompt", lines=6, max_lines=40, interactive=False,
                            buttons=["copy"], elem_id=f"prompt-{m}") for m in METHODS]

    with gr.Accordion("Before and after for one user: the base next to their own adapter", open=False):
        gr.Markdown("A per-user adapter is trained on one annotator's choices (Annotate tab → *Train my "
                    "adapter*). Both columns get the PBA prompt with the slider profile, as ONE batch of two: "
                    "the left one runs the base backbone, the right one adds the user's adapter.")
        with gr.Row(equal_height=True):
            user_pick = gr.Dropdown([], label="Per-user adapter", scale=3, allow_custom_value=True,
                                    elem_id="user-adapter")
            user_refresh = gr.Button("Refresh list", scale=1)
            user_run = gr.Button("Compare before / after", variant="primary", scale=1, elem_id="run-user-compare")
        with gr.Row(equal_height=True):
            user_outs = [gr.Textbox(label=label, lines=8, interactive=False, elem_id=eid) for label, eid in
                         (("Before: base backbone", "out-user-before"), ("After: with the user's adapter",
                                                                         "out-user-after"))]
        user_status = gr.Markdown()

    inputs = [persona_json, vector_json, prompt_box, max_new, temp_slider, seed_box]

    # Handlers
    @shows_errors
    def check(session: Session, persona, vector, prompt, max_new_tokens, temperature, seed):
        """Cheap validation before queueing for the model; keeps the inputs in the session."""
        req = parse_request(persona, vector, prompt, max_new_tokens, temperature, seed, session.generation.top_p)
        session = session.copy(prompt=req.prompt, generation=req.generation, seed=req.seed)
        return session, gr.update(interactive=False)

    @shows_errors
    def compare(persona, vector, prompt, max_new_tokens, temperature, seed, session: Session):
        """ICA, PBA and universal answers to the prompt, streamed from one batched generation.

        Args:
            persona: the persona as AlignX-format JSON ("" = empty persona).
            vector: 90 numbers in [0, 1] as a JSON list ("" = derived from the persona's directions).
            prompt: the post. max_new_tokens, temperature (0 = greedy), seed: decoding settings.

        Returns:
            ICA text, PBA text, universal text, the ICA / PBA / universal prompts, and a status line.
        """
        req = parse_request(persona, vector, prompt, max_new_tokens, temperature, seed, session.generation.top_p)
        yield "", "", "", "", "", "", "Getting the backbone (its first load takes a while)…"
        backbone = load(ctx.models, session.backbone)
        for step in stream_compare(backbone, req):
            yield (*step.texts, *step.prompts, status_line(backbone, step))

    @shows_errors
    def compare_user(persona, vector, prompt, max_new_tokens, temperature, seed, adapter, session: Session):
        """Before and after for one user: the PBA prompt (the vector's profile) on the base backbone and with
        that user's adapter (an id from the store's finished per-user adapters), streamed as one batch.

        Returns:
            The base text, the adapted text, and a status line.
        """
        req = parse_request(persona, vector, prompt, max_new_tokens, temperature, seed, session.generation.top_p)
        settings = user_adapter_settings(ctx.db_path, session.backbone, adapter)
        yield "", "", "Loading the backbone with this user's adapter (the first time takes a while)…"
        backbone = load(ctx.models, settings)
        for step in stream_user_compare(backbone, req):
            state_text = f"done in {step.elapsed_s:.1f} s" if step.done else f"generating… {step.elapsed_s:.1f} s"
            yield (*step.texts, f"{describe(backbone)} · one batch of 2 · {state_text}")

    def keep_outputs(session: Session, *texts):
        """Store the final texts in the session as it is now (sliders may have moved meanwhile)."""
        return session.copy(outputs=dict(zip(METHODS, texts)))

    # Register listeners
    checked = run.click(check, [state, *inputs], [state, run], **QUIET)
    generating = checked.success(compare, [*inputs, state], [*outs, *shown, status], api_name="compare",
                                 show_progress="minimal", **MODEL_QUEUE)
    generating.then(lambda: gr.update(interactive=True), None, run, **QUIET)
    generating.success(keep_outputs, [state, *outs], state, **QUIET)
    stop.click(lambda: gr.update(interactive=True), None, run, cancels=[generating], **QUIET)
    for event in (user_refresh.click, user_pick.focus):
        event(lambda: gr.update(choices=user_adapters(ctx.db_path)), None, user_pick, **QUIET)
    user_run.click(compare_user, [*inputs, user_pick, state], [*user_outs, user_status], api_name="compare_user",
                   show_progress="minimal", **MODEL_QUEUE)

    def fill(session: Session) -> list:
        g = session.generation
        return [session.prompt, g.max_new_tokens, g.temperature, session.seed,
                *(session.outputs.get(m, "") for m in METHODS)]

    return View(outputs=[prompt_box, max_new, temp_slider, seed_box, *outs], fill=fill)
