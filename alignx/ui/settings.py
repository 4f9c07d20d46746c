"""The Settings tab: which backbone the session runs (embedded, any HF id or folder, or the
official AlignXpert checkpoints with their exact templates), its precision and its adapters."""

from __future__ import annotations

import gradio as gr

from alignx.compare import (LOCK_ENV, check_backbone_settings, check_settings_unlocked, describe, load,
                            settings_locked)
from alignx.session import PRECISIONS, TEMPLATES, BackboneSettings, Session
from alignx.ui.common import MODEL_QUEUE, QUIET, AppContext, View, shows_errors

OFFICIAL = ["JinaLeejnl/AlignXpert-ICA-Full", "JinaLeejnl/AlignXpert-PBA-Full"]
HELP = (
    "**embedded** is SmolLM2-135M-Instruct, shipped as a GGUF and run on the CPU; nothing is downloaded. "
    "Any Hugging Face id or local folder works where the hub (or its cache) is reachable. The official "
    "AlignXpert checkpoints are Llama-3.1-8B full fine-tunes (about 16 GB in bf16): with template *auto* "
    "they get the paper's exact Llama-3 prompt strings, and all three columns run on the checkpoint you "
    "pick. Adapters are peft LoRA folders holding `adapter_model.safetensors`; leave a box empty for none. "
    "A failed load leaves the previous backbone in place.")
LOCKED = (f"**Locked by the host** (`{LOCK_ENV}=1`): this server runs the backbone below and nothing else; "
          "the model id, GGUF file, precision, template and adapter folders cannot be changed here.")


def settings_from(model, gguf_file, precision, template, ica_adapter, pba_adapter) -> BackboneSettings:
    adapters = {k: v.strip() for k, v in (("ica", ica_adapter), ("pba", pba_adapter)) if (v or "").strip()}
    return BackboneSettings(model=model or "", gguf_file=gguf_file or None, precision=precision,
                            adapters=adapters, template=template)


def build_settings(ctx: AppContext, state: gr.State) -> View:
    b = ctx.defaults.backbone
    locked = settings_locked()  # read once at build time: a locked page shows read-only boxes
    editable = dict(interactive=not locked)
    gr.Markdown(LOCKED if locked else HELP)
    with gr.Row():
        model_box = gr.Dropdown(["embedded", *OFFICIAL], value=b.model, allow_custom_value=True, scale=3,
                            label="Backbone", info="embedded, an official checkpoint, any HF id or a local folder",
                            **editable)
        gguf_box = gr.Textbox(b.gguf_file or "", label="GGUF file inside the model (optional)", scale=2,
                              **editable)
    with gr.Row():
        precision_box = gr.Dropdown(list(PRECISIONS), value=b.precision, label="Precision", **editable,
                                info="auto = nf4 when bitsandbytes is installed")
        template_box = gr.Dropdown(list(TEMPLATES), value=b.template, label="Prompt template", **editable,
                               info="auto = official Llama-3 strings for AlignXpert, else the chat template")
    with gr.Row():
        ica_box = gr.Textbox(b.adapters.get("ica", ""), label="ICA adapter folder", placeholder="none",
                             **editable)
        pba_box = gr.Textbox(b.adapters.get("pba", ""), label="PBA adapter folder", placeholder="none",
                             **editable)
    apply = gr.Button("Load this backbone", variant="primary", **editable)
    status = gr.Markdown(label="Status",
                         value=f"Session backbone (loads on first use): {ctx.models.describe(b.to_config())}")

    inputs = [model_box, gguf_box, precision_box, template_box, ica_box, pba_box]

    # Handlers
    @shows_errors
    def check(*values):
        check_settings_unlocked()
        check_backbone_settings(settings_from(*values))
        return "Loading…"

    @shows_errors
    def load_model(model, gguf_file, precision, template, ica_adapter, pba_adapter, session: Session,
                   progress=gr.Progress()):
        """Load a backbone for this session (kept in the shared cache); returns a status line.
        Refused on a server started with ALIGNX_LOCK_SETTINGS=1."""
        check_settings_unlocked()
        settings = settings_from(model, gguf_file, precision, template, ica_adapter, pba_adapter)
        progress(0, desc=f"Loading {settings.model}…")
        backbone = load(ctx.models, settings)
        return f"Loaded in {backbone.load_seconds:.1f} s: {describe(backbone)}", session.copy(backbone=settings)

    # Register listeners
    loading = apply.click(check, inputs, status, **QUIET).success(
        load_model, [*inputs, state], [status, state], api_name="load_model", **MODEL_QUEUE)
    loading.failure(lambda session: f"Load failed; the session keeps its backbone: "
                    f"{ctx.models.describe(session.backbone.to_config())}", state, status, **QUIET)

    def fill(session: Session) -> list:
        s = session.backbone
        return [s.model, s.gguf_file or "", s.precision, s.template, s.adapters.get("ica", ""),
                s.adapters.get("pba", "")]

    return View(outputs=inputs, fill=fill)
