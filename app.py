"""The alignx Gradio app. Thin: each tab is a `build_<tab>()` in `alignx/ui/` that wires widgets to
library calls; this file reads the environment and composes them.

    python app.py                      # http://127.0.0.1:7860, the embedded SmolLM2 in nf4

Environment: ALIGNX_MODEL (model id or folder, default "embedded"), ALIGNX_PRECISION (auto),
ALIGNX_ADAPTERS ("ica=DIR,pba=DIR"; default: the adapters shipped in assets/adapters, if present),
ALIGNX_DB (the SQLite store; default ~/.local/share/alignx/alignx.db),
ALIGNX_LOCK_SETTINGS=1 (public hosting: the backbone above cannot be changed from the app),
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT. Analytics are off; uploads are capped at 20 MB (persona, session and queue files at 2 MB).

`demo` is importable for tests and for Hugging Face Spaces.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import gradio as gr

from alignx import personas, store
from alignx.backbone import BackboneCache, parse_adapter_specs
from alignx.compare import set_host_backbone
from alignx.explore.projection import MapCache
from alignx.session import BackboneSettings, Session
from alignx.ui import (AppContext, build_annotate, build_compare, build_control, build_map, build_persona,
                       build_preferences, build_session, build_settings, connect_reloads)
from alignx.ui.common import MAX_SERVER_UPLOAD_BYTES

ASSETS = Path(__file__).parent / "assets"
DEFAULT_PERSONA = "outdoor-guide"
EXAMPLE_PROMPTS = (
    "Any tips for a weekend trip?",
    "Can you recommend a good book for a long flight?",
    "How should I spend a free Saturday?",
    "Should I put my savings into index funds or into my friend's startup?",
    "Write a short message to cheer up a friend who failed an exam.",
    "Explain why the sky is blue.",
)
CSS = ".dim-slider .info { min-height: 1.4em; }"

# The one read-only cache of heavy objects (loaded backbones), shared by all sessions.
MODELS = BackboneCache()
# The preference map (a UMAP fitted once, cached on disk), shared read-only by all sessions.
MAPS = MapCache()


def default_backbone() -> BackboneSettings:
    """The backbone from the environment, else the embedded model with the shipped adapters.
    ALIGNX_ADAPTERS=none attaches none (the shipped adapters fit only the embedded model)."""
    spec = os.environ.get("ALIGNX_ADAPTERS")
    adapters = parse_adapter_specs(filter(None, spec.split(","))) if spec and spec != "none" else {}
    if not spec:
        for name in ("ica", "pba"):
            if (ASSETS / "adapters" / name / "adapter_model.safetensors").is_file():
                adapters[name] = str(ASSETS / "adapters" / name)
    return BackboneSettings(model=os.environ.get("ALIGNX_MODEL", "embedded"),
                            precision=os.environ.get("ALIGNX_PRECISION", "auto"), adapters=adapters)


def make_context(models: BackboneCache = MODELS) -> AppContext:
    """The read-only context the tabs share: model cache, starting session, store, examples."""
    examples = personas.load_examples(ASSETS / "personas")
    persona = examples.get(DEFAULT_PERSONA) or next(iter(examples.values()), None)
    start = Session(prompt=EXAMPLE_PROMPTS[0], backbone=default_backbone())
    if persona is not None:
        start = start.copy(persona=persona.to_dict(), vector=personas.derive_vector(persona) or start.vector)
    set_host_backbone(start.backbone)  # the only backbone a server started with ALIGNX_LOCK_SETTINGS=1 runs
    return AppContext(models=models, defaults=start, db_path=str(store.default_path()),
                      examples=types.MappingProxyType(examples), example_prompts=EXAMPLE_PROMPTS)


def build_demo(ctx: AppContext | None = None) -> gr.Blocks:
    ctx = ctx or make_context()
    with gr.Blocks(title="alignx", analytics_enabled=False) as demo:
        gr.Markdown("# alignx\nUser-level personalized alignment: build a **persona**, set the **preferences**, "
                    "then **compare** ICA (raw persona) vs PBA (preference profile) vs a universal answer. "
                    "What you save stays in this server's local store (Annotate → *Your data*).")
        state = gr.State(ctx.defaults)  # this tab's Session (deep-copied per user by Gradio)
        with gr.Tabs():
            with gr.Tab("Persona", id="persona"):
                persona = build_persona(ctx, state)
            with gr.Tab("Preferences", id="preferences"):
                prefs = build_preferences(ctx, state)
            with gr.Tab("Compare", id="compare"):
                compare = build_compare(ctx, state, persona.components["persona_json"],
                                        prefs.components["vector_json"])
            with gr.Tab("Settings", id="settings"):
                settings = build_settings(ctx, state)
            with gr.Tab("Session", id="session"):
                session = build_session(ctx, state)
            with gr.Tab("Annotate", id="annotate"):
                build_annotate(ctx, state)
            with gr.Tab("Map", id="map"):
                pmap = build_map(ctx, state, MAPS)
            with gr.Tab("Controllability", id="control"):
                build_control(ctx, state)
        connect_reloads(state, [persona, prefs, compare, settings, session, pmap])
        gr.api(pmap.components["project"], api_name="project")
        demo.load(persona.components["refresh_saved"], None, persona.components["saved"],
                  api_visibility="private", show_progress="hidden")
    return demo


demo = build_demo()

if __name__ == "__main__":
    MODELS.warm(default_backbone().to_config())  # load in the background; the page is served at once
    MAPS.warm()  # import umap, read (or fit) the map and load its compiled transform, in the background
    demo.queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        css=CSS,
        max_file_size=MAX_SERVER_UPLOAD_BYTES,
        show_error=True,  # a value Gradio itself refuses (e.g. text for a slider) gets its own message too
    )
