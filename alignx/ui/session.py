"""The Session tab: export the whole session (persona, vector, prompt, backbone, adapters, decoding
settings, seed, last outputs) as one JSON file, and import one to share and rerun a comparison."""

from __future__ import annotations

import datetime

import gradio as gr

from alignx.compare import InputError, check_backbone_settings
from alignx.session import Session
from alignx.ui.common import PRIVATE, AppContext, View, read_upload, shows_errors, write_download

HELP = (
    "A session file holds everything needed to rerun a comparison: the persona, the slider vector, "
    "the prompt, the backbone (model id, precision, template, adapter folders), the decoding settings, "
    "the seed and the last three outputs. With temperature 0 a rerun on the same backbone gives the "
    "same texts.")


def build_session(ctx: AppContext, state: gr.State) -> View:
    gr.Markdown(HELP)
    with gr.Row(equal_height=True):
        export = gr.Button("Export session", variant="primary")
        upload = gr.UploadButton("Import session", file_types=[".json"])
    exported = gr.File(label="Session file", visible=False, elem_id="session-file")
    with gr.Accordion("Session JSON", open=False):
        preview = gr.Code(ctx.defaults.to_json(), language="json", interactive=False)

    # Handlers
    def do_export(session: Session):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return gr.update(value=write_download(session.to_json(), f"alignx-session-{stamp}"), visible=True), \
            session.to_json()

    @shows_errors
    def do_import(session: Session, file):
        imported = Session.from_json(read_upload(file))
        try:
            check_backbone_settings(imported.backbone)
        except InputError as exc:
            gr.Warning(f"Imported, but its backbone will not load here: {exc} Change it on the Settings tab.")
        gr.Info("Session imported: persona, sliders, prompt and settings are set; press Compare to rerun.")
        return imported, imported.to_json()

    # Register listeners
    export.click(do_export, state, [exported, preview], **PRIVATE)
    imported = upload.upload(do_import, [state, upload], [state, preview], **PRIVATE)

    return View(reloads=[imported])
