"""The Annotate tab: judge two responses per prompt as yourself or as a target persona, with
keyboard shortcuts, undo and progress; export the choices as AlignX data, see the agreement
between annotators, and train a per-user adapter on your own choices."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import gradio as gr

from alignx import annotation, personas, privacy
from alignx.annotation import METHODS, StudySettings
from alignx.compare import load
from alignx.session import Session
from alignx.ui.common import MODEL_QUEUE, PRIVATE, QUIET, AppContext, View, shows_errors

HELP = (
    "Judge which of two responses fits the persona better. Enter your name, choose whether you judge as "
    "**yourself** (the persona and sliders of the Persona and Preferences tabs, saved with your name) or as a "
    "**target persona**, pick a queue of prompts and press *Start*. The two responses come from the methods "
    "in the study settings, in a random order that is recorded. Every choice is saved in the SQLite store "
    "before the page confirms it.  \n"
    "Keys: **a** / **1** A is better · **b** / **2** B is better · **t** / **3** tie · **n** / **4** both bad · "
    "**s** / **5** skip · **u** undo the last choice (not while typing in a box).")
TRAIN_HELP = (
    "Trains a small LoRA adapter with DPO on *your* A / B choices (at least 4; ties, both-bad and skips do not "
    "count), in the background: LoRA on the top 4 layers, PBA prompts carrying your profile. On a 2-core CPU, "
    "20 pairs and 3 epochs take about two minutes. When it is ready, the Compare tab shows the base next to "
    "your adapter.")
BUTTONS = {"A": ("A is better  [a]", "annot-a"), "B": ("B is better  [b]", "annot-b"),
           "tie": ("Tie  [t]", "annot-tie"), "both_bad": ("Both bad  [n]", "annot-both-bad"),
           "skip": ("Skip  [s]", "annot-skip")}
# Installed once per page: a key press clicks the matching button, only while the Annotate tab is
# visible and the focus is not in a text box.
KEYS_JS = """
if (!window.alignxAnnotateKeys) {
  window.alignxAnnotateKeys = true;
  const keys = {a: 'annot-a', '1': 'annot-a', b: 'annot-b', '2': 'annot-b', t: 'annot-tie', '3': 'annot-tie',
                n: 'annot-both-bad', '4': 'annot-both-bad', s: 'annot-skip', '5': 'annot-skip', u: 'annot-undo'};
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target || {};
    const tag = (target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || target.isContentEditable) return;
    const id = keys[(event.key || '').toLowerCase()];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null || button.disabled) return;
    event.preventDefault();
    button.click();
  });
}
"""


@dataclass
class AnnotateState:
    """One browser tab's annotation state (deep-copyable, kept in ``gr.State``).

    Args:
        annotator, session_id, queue, target: who, this tab's session, the queue, the target
            persona ("" = own persona). settings (`dict`): the `StudySettings`.
        current (`dict`, *optional*): the item shown (`alignx.annotation.next_item`).
        adapter_id (`int`, *optional*): this tab's last adapter job.
    """

    annotator: str = ""
    session_id: str = ""
    queue: str = ""
    target: str = ""
    settings: dict = field(default_factory=dict)
    current: dict | None = None
    adapter_id: int | None = None


def item_values(shown: dict) -> list:
    """Progress, prompt, A text, B text for an item (or for the end of the queue)."""
    progress = f"**{shown['queue']}** · {annotation.progress_text(shown['progress'])}"
    if shown["done"]:
        return [progress, "**Queue finished.** Export your choices, or train your adapter below.", "", ""]
    return [f"{progress} · item {shown['position']} of {shown['total']}",
            f"**Prompt:** {shown['prompt']}", shown["a"], shown["b"]]


def build_annotate(ctx: AppContext, state: gr.State) -> View:
    examples = list(ctx.examples)
    queues = list(annotation.asset_queues())  # the store's queues are added when the list opens
    gr.Markdown(HELP)
    with gr.Row():
        name = gr.Textbox(label="Your name (annotator)", placeholder="e.g. ana", scale=2, elem_id="annot-name")
        mode = gr.Radio([("Myself (Persona and Preferences tabs)", "own"), ("A target persona", "target")],
                        value="own", label="Judge as", scale=2, elem_id="annot-mode")
        target = gr.Dropdown([(personas.title(n), n) for n in examples], value=examples[0] if examples else None,
                             label="Target persona (when judging as one)", scale=2, elem_id="annot-target")
    with gr.Row(equal_height=True):
        queue = gr.Dropdown(queues, value=queues[0] if queues else None, allow_custom_value=True, scale=3,
                            label="Queue of prompts", elem_id="annot-queue")
        upload = gr.UploadButton("Upload prompts (.jsonl / .csv, ≤ 1 MB)", file_types=[".jsonl", ".csv"], scale=1)
    with gr.Accordion("Study settings: how the two responses are made", open=False):
        with gr.Row():
            method_1 = gr.Dropdown(list(METHODS), value="pba", label="Response 1")
            method_2 = gr.Dropdown(list(METHODS), value="universal", label="Response 2",
                                   info="the same method twice gives two samples")
            max_new = gr.Slider(8, 256, value=48, step=8, label="Max new tokens", elem_id="annot-max-new")
            temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    start = gr.Button("Start / next item", variant="primary", elem_id="annot-start")
    progress = gr.Markdown(elem_id="annot-progress")
    prompt = gr.Markdown(elem_id="annot-prompt")
    with gr.Row(equal_height=True):
        text_a = gr.Textbox(label="A", lines=8, max_lines=20, interactive=False, elem_id="annot-text-a")
        text_b = gr.Textbox(label="B", lines=8, max_lines=20, interactive=False, elem_id="annot-text-b")
    rationale = gr.Textbox(label="Rationale (optional)", placeholder="why", elem_id="annot-rationale")
    with gr.Row():
        buttons = {c: gr.Button(label, elem_id=eid, variant="primary" if c in "AB" else "secondary")
                   for c, (label, eid) in BUTTONS.items()}
        undo = gr.Button("Undo last  [u]", variant="stop", elem_id="annot-undo")
    status = gr.Markdown(elem_id="annot-status")
    with gr.Accordion("Export and agreement", open=False):
        with gr.Row(equal_height=True):
            include = gr.Radio([("A / B preferences", "preferences"), ("every choice", "all")], value="preferences",
                               label="Export")
            fmt = gr.Radio([("AlignX JSONL", "jsonl"), ("datasets folder (zip)", "dataset")], value="jsonl",
                           label="Format")
            export_btn = gr.Button("Export", elem_id="annot-export")
        exported = gr.File(label="Exported file", interactive=False, elem_id="annot-export-file")
        agree_btn = gr.Button("Agreement on this queue", elem_id="annot-agree")
        agree_text = gr.Markdown(elem_id="annot-agreement")
        agree_json = gr.JSON(label="Agreement figures", visible=False)
    with gr.Accordion("Train my adapter", open=False):
        gr.Markdown(TRAIN_HELP)
        with gr.Row(equal_height=True):
            epochs = gr.Number(3, minimum=1, maximum=20, precision=0, label="Epochs", scale=1)
            train = gr.Button("Train my adapter", variant="primary", elem_id="annot-train", scale=2)
        train_status = gr.Markdown(elem_id="annot-train-status")
    with gr.Accordion("Your data: what is stored, export it, delete it", open=False, elem_id="your-data"):
        gr.Markdown(privacy.NOTICE, elem_id="privacy-notice")
        with gr.Row(equal_height=True):
            export_mine = gr.Button("Download everything stored under my name", elem_id="export-my-data", scale=2)
            confirm_delete = gr.Checkbox(label="Yes, delete it all (this cannot be undone)", value=False, scale=1,
                                         elem_id="confirm-delete")
            delete_mine = gr.Button("Delete everything stored under my name", variant="stop", scale=2,
                                    elem_id="delete-my-data")
        my_file = gr.File(label="Your data (JSON)", interactive=False, elem_id="my-data-file")
        my_status = gr.Markdown(elem_id="my-data-status")
    gr.HTML("", js_on_load=KEYS_JS, elem_id="annot-keys")
    astate = gr.State(AnnotateState())

    def backbone_for(session: Session):
        return lambda: load(ctx.models, session.backbone)

    def model_tag(session: Session) -> str:
        return json.dumps(dataclasses.asdict(session.backbone), sort_keys=True)

    # Handlers
    @shows_errors
    def begin(a: AnnotateState, session: Session, who, judge_as, target_name, queue_name, m1, m2, max_tokens,
              temp, seed_value):
        """Cheap checks, then save the identity (own persona) and the study settings."""
        settings = StudySettings(m1, m2, max_tokens, temp, 1.0, seed_value)
        tgt = target_name if judge_as == "target" else ""
        if judge_as == "target" and not tgt:
            raise ValueError("Pick the target persona to judge as.")
        if judge_as == "own":
            message = annotation.register_annotator(ctx.db_path, who, session.persona, session.vector)
        else:
            message = f"Judging as the target persona {personas.title(tgt)!r}."
        a = dataclasses.replace(a, annotator=" ".join(who.split()), queue=queue_name, target=tgt,
                                settings=dataclasses.asdict(settings), current=None,
                                session_id=a.session_id or uuid.uuid4().hex[:12])
        return a, f"{message} Getting the next item (the first responses may take a while to generate)…"

    @shows_errors
    def show_next(a: AnnotateState, session: Session):
        if not a.annotator:
            raise ValueError("Enter your name and press Start first.")
        shown = annotation.next_item(ctx.db_path, annotator=a.annotator, queue=a.queue, session_id=a.session_id,
                                     settings=StudySettings(**a.settings), get_backbone=backbone_for(session),
                                     model_tag=model_tag(session), target=a.target, targets=ctx.examples)
        a = dataclasses.replace(a, current=None if shown["done"] else shown)
        return a, *item_values(shown)

    def chooser(choice: str):
        @shows_errors
        def choose(a: AnnotateState, why: str):
            if a.current is None:
                raise ValueError("No item is shown: press Start (or wait for the next item).")
            saved = annotation.save_choice(ctx.db_path, annotator=a.annotator, pair_id=a.current["pair_id"],
                                           order=a.current["order"], choice=choice, rationale=why,
                                           session_id=a.session_id, target=a.target, targets=ctx.examples)
            a = dataclasses.replace(a, current=None)
            return (a, f"Saved #{saved['id']}: **{annotation.CHOICE_NAMES[choice]}** on item {saved['position']}.",
                    f"**{saved['queue']}** · {annotation.progress_text(saved['progress'])}", "")
        return choose

    @shows_errors
    def do_undo(a: AnnotateState):
        if not a.annotator:
            raise ValueError("Nothing to undo: no choice was made in this session.")
        undone = annotation.undo_last(ctx.db_path, a.annotator, a.session_id)
        if undone["undone"] is None:
            raise ValueError("Nothing to undo: no choice was made in this session.")
        u = undone["undone"]
        a = dataclasses.replace(a, queue=u["queue"], current=None)
        return a, f"Undid #{u['id']} (**{annotation.CHOICE_NAMES[u['choice']]}** on item {u['position']})."

    @shows_errors
    def do_upload(file):
        queue_name, n = annotation.load_queue(ctx.db_path, read_upload_path(file))
        gr.Info(f"Loaded queue {queue_name!r}: {n} prompts.")
        return gr.update(choices=annotation.queue_names(ctx.db_path), value=queue_name)

    @shows_errors
    def export_annotations(queue: str, format: str, include: str):
        """Export the choices of a queue ("" = every queue) as AlignX-format JSONL (format "jsonl") or as
        a zipped Hugging Face datasets folder (format "dataset"); include "preferences" (A / B only) or "all".

        Returns:
            The exported file.
        """
        path = annotation.export(ctx.db_path, tempfile.mkdtemp(prefix="alignx-export-"), format,
                                 queue=queue or None, include=include)
        return str(path)

    @shows_errors
    def agreement(queue: str) -> dict:
        """Agreement between the annotators of a queue: Cohen's kappa (two annotators), Fleiss' kappa
        (more), raw agreement, and every annotator pair's Cohen's kappa."""
        return annotation.queue_agreement(ctx.db_path, queue)

    @shows_errors
    def start_training(a: AnnotateState, who: str, n_epochs):
        """Train on the choices of the annotator named in the box (all their sessions)."""
        who = " ".join((who or a.annotator).split())
        if not who:
            raise ValueError("Enter your name (the annotator whose choices to train on).")
        a = dataclasses.replace(a, session_id=a.session_id or uuid.uuid4().hex[:12])
        job = annotation.start_adapter_job(ctx.db_path, who, a.session_id,
                                           annotation.AdapterOptions(epochs=float(n_epochs or 3)))
        return dataclasses.replace(a, adapter_id=job.adapter_id), annotation.adapter_text(job.status())

    def follow(a: AnnotateState):
        while a.adapter_id is not None:
            row = annotation.adapter_status(ctx.db_path, a.adapter_id)
            yield annotation.adapter_text(row)
            if row["status"] in ("done", "failed"):
                return
            time.sleep(1.0)

    @shows_errors
    def export_my_data(annotator: str) -> str:
        """Everything stored under an annotator name (identity, choices, adapters) as one JSON file."""
        folder = tempfile.mkdtemp(prefix="alignx-mydata-")
        return str(privacy.write_export(ctx.db_path, annotator, f"{folder}/alignx-my-data.json"))

    @shows_errors
    def delete_my_data(annotator: str, confirm: bool) -> str:
        """Delete everything stored under an annotator name; ``confirm`` must be true. Returns what went."""
        if confirm is not True:
            raise ValueError("Tick the confirmation box first: deleting cannot be undone.")
        return privacy.delete_text(privacy.delete_user(ctx.db_path, annotator))

    # API: stateless endpoints for scripts (gradio_client), beside the widgets' own events.
    @shows_errors
    def annotator(name: str, persona: str = "", vector: str = "") -> str:
        """Save an annotator's own persona (AlignX JSON) and preference vector (JSON list of 90 numbers)."""
        from alignx.compare import parse_persona, parse_vector

        p = parse_persona(persona)
        return annotation.register_annotator(ctx.db_path, name, p, parse_vector(vector, p))

    @shows_errors
    def next_item(annotator: str, queue: str, session: str = "api", target: str = "", settings: str = "") -> dict:
        """The next item for an annotator: prompt, the two responses in the order shown (a, b), pair_id, order
        and progress; generates the pair with the app's default backbone when needed. ``target``: an example
        persona name ("" = the annotator's own); ``settings``: StudySettings as JSON ("" = defaults)."""
        return annotation.next_item(ctx.db_path, annotator=annotator, queue=queue, session_id=session,
                                    settings=StudySettings.from_json(settings),
                                    get_backbone=lambda: load(ctx.models, ctx.defaults.backbone),
                                    model_tag=model_tag(ctx.defaults), target=target, targets=ctx.examples)

    @shows_errors
    def save_choice(annotator: str, pair_id: int, order: str, choice: str, rationale: str = "",
                    session: str = "api", target: str = "") -> dict:
        """Save one choice (A, B, tie, both_bad or skip) on a pair shown in ``order`` ("12": response 1 was A).
        Returns once the choice is committed to disk: {"id", "choice", "queue", "position", "progress"}."""
        return annotation.save_choice(ctx.db_path, annotator=annotator, pair_id=pair_id, order=order, choice=choice,
                                      rationale=rationale, session_id=session, target=target, targets=ctx.examples)

    @shows_errors
    def undo_choice(annotator: str, session: str = "api") -> dict:
        """Undo the annotator's last choice of a session."""
        return annotation.undo_last(ctx.db_path, annotator, session)

    # Register listeners
    inputs = [astate, state, name, mode, target, queue, method_1, method_2, max_new, temperature, seed]
    item_outputs = [astate, progress, prompt, text_a, text_b]
    start.click(begin, inputs, [astate, status], **QUIET).success(show_next, [astate, state], item_outputs,
                                                                   api_visibility="private", **MODEL_QUEUE)
    for choice, button in buttons.items():
        saved = button.click(chooser(choice), [astate, rationale], [astate, status, progress, rationale], **PRIVATE)
        saved.success(show_next, [astate, state], item_outputs, api_visibility="private", **MODEL_QUEUE)
    undone = undo.click(do_undo, astate, [astate, status], **PRIVATE)
    undone.success(show_next, [astate, state], item_outputs, api_visibility="private", **MODEL_QUEUE)
    upload.upload(do_upload, upload, queue, **PRIVATE)
    queue.focus(lambda: gr.update(choices=annotation.queue_names(ctx.db_path)), None, queue, **QUIET)
    export_btn.click(export_annotations, [queue, fmt, include], exported, api_name="export_annotations")
    agree_btn.click(agreement, queue, agree_json, api_name="agreement").success(
        annotation.agreement_text, agree_json, agree_text, **QUIET)
    train.click(start_training, [astate, name, epochs], [astate, train_status], **PRIVATE).success(
        follow, astate, train_status, api_visibility="private", concurrency_limit=None)
    export_mine.click(export_my_data, name, my_file, api_name="export_my_data", concurrency_id="store",
                      concurrency_limit=4)
    delete_mine.click(delete_my_data, [name, confirm_delete], my_status, api_name="delete_my_data",
                      concurrency_id="store", concurrency_limit=4)
    gr.api(annotator, api_name="annotator", concurrency_id="store", concurrency_limit=4)
    gr.api(next_item, api_name="next_item", **MODEL_QUEUE)
    gr.api(save_choice, api_name="save_choice", concurrency_id="store", concurrency_limit=4)
    gr.api(undo_choice, api_name="undo_choice", concurrency_id="store", concurrency_limit=4)

    return View()


def read_upload_path(file) -> str:
    """The server-side path of an uploaded file (a path string or a gradio file object)."""
    if file is None:
        raise ValueError("No file was uploaded.")
    return str(getattr(file, "name", file))


__all__ = ["AnnotateState", "build_annotate"]
