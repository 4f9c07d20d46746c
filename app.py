"""The alignx Gradio app. Thin: each tab is a `build_<tab>()` that wires widgets to library calls.

    python app.py                      # http://127.0.0.1:7860, the embedded SmolLM2 in nf4

Environment: ALIGNX_MODEL (model id or folder, default "embedded"), ALIGNX_PRECISION (auto),
ALIGNX_ADAPTERS ("ica=DIR,pba=DIR"; default: the adapters shipped in assets/adapters, if present),
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.

`demo` is importable for tests and for Hugging Face Spaces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gradio as gr

from alignx import schema
from alignx.backbone import METHODS, BackboneCache, BackboneConfig
from alignx.prompts import EXAMPLE_PERSONA, EXAMPLE_PROMPT

ASSETS = Path(__file__).parent / "assets"
EXAMPLE_PROMPTS = [
    EXAMPLE_PROMPT,
    "How should I spend a free Saturday?",
    "Explain why the sky is blue.",
    "Write a short message to cheer up a friend who failed an exam.",
]


def default_config() -> BackboneConfig:
    """The app's backbone: environment settings, else the embedded model with shipped adapters."""
    adapters = {}
    spec = os.environ.get("ALIGNX_ADAPTERS")
    if spec:
        for item in filter(None, spec.split(",")):
            name, _, path = item.partition("=")
            adapters[name.strip()] = path.strip()
    else:
        for name in ("ica", "pba"):
            if (ASSETS / "adapters" / name / "adapter_model.safetensors").is_file():
                adapters[name] = str(ASSETS / "adapters" / name)
    return BackboneConfig(model=os.environ.get("ALIGNX_MODEL", "embedded"),
                          precision=os.environ.get("ALIGNX_PRECISION", "auto"), adapters=adapters)


# The one read-only cache of heavy objects, shared by all sessions. Handlers never mutate it.
MODELS = BackboneCache()
CONFIG = default_config()


# ----------------------------------------------------------------------------- compare tab


def _parse_persona(text: str) -> schema.Persona:
    if not text.strip():
        return schema.Persona()
    try:
        return schema.persona_from_dict(json.loads(text), source="persona")
    except json.JSONDecodeError as exc:
        raise gr.Error(f"Persona is not valid JSON: {exc}") from exc
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


def compare(prompt: str, persona_json: str, profile: str, max_new_tokens: int, temperature: float, seed: int):
    """Stream ICA, PBA and universal outputs, side by side, from one batched generate call."""
    if not prompt.strip():
        raise gr.Error("Write a prompt first.")
    persona = _parse_persona(persona_json)
    backbone = MODELS.get(CONFIG)
    try:
        prompts, adapters = backbone.compare_batch(prompt, persona=persona, profile=profile.strip() or None)
        shown = "\n\n".join(f"### {m.upper()} (adapter: {a or 'none'})\n```\n{p}\n```"
                            for m, a, p in zip(METHODS, adapters, prompts))
        for texts in backbone.stream(prompts, adapters, max_new_tokens=int(max_new_tokens),
                                     temperature=float(temperature), seed=int(seed)):
            yield (*texts, shown)
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


def build_compare() -> None:
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPT, lines=2)
            gr.Examples(EXAMPLE_PROMPTS, inputs=prompt)
        with gr.Column(scale=1):
            max_new = gr.Slider(8, 512, value=96, step=8, label="Max new tokens")
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
            seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Accordion("Persona (AlignX JSON) and profile", open=False):
        persona = gr.Code(json.dumps(EXAMPLE_PERSONA.to_dict(), indent=2), language="json", label="Persona")
        profile = gr.Textbox(label="PBA profile (empty: built from the persona's directions)", lines=2)
    run = gr.Button("Compare", variant="primary")
    with gr.Row():
        outs = [gr.Textbox(label=m.upper() if m != "universal" else "Universal", lines=10) for m in METHODS]
    with gr.Accordion("Exact prompts", open=False):
        prompts_md = gr.Markdown()

    # Register listeners
    run.click(compare, [prompt, persona, profile, max_new, temperature, seed], [*outs, prompts_md],
              api_name="compare", concurrency_id="model")


def build_about() -> None:
    info = MODELS.describe(CONFIG)
    gr.Markdown(f"**Backbone:** {info}")


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="alignx") as demo:
        gr.Markdown("# alignx\nUser-level personalized alignment: ICA vs PBA vs universal.")
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                build_compare()
            with gr.Tab("About", id="about"):
                build_about()
    return demo


demo = build_demo()

if __name__ == "__main__":
    MODELS.warm(CONFIG)  # load in the background; the page is served at once
    demo.queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
