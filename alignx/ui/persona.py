"""The Persona tab: build a persona (UGC items, pair items, demographics), load an example, save
and load it by name in the SQLite store, and as AlignX-format JSON files."""

from __future__ import annotations

import gradio as gr

from alignx import personas
from alignx.compare import parse_persona
from alignx.schema import Persona, persona_to_dict
from alignx.session import Session
from alignx.store import Store
from alignx.ui.common import PRIVATE, QUIET, AppContext, View, read_upload, shows_errors, write_download

PERSONA_HELP = (
    "A persona is what ICA sees: the user's comments on posts (UGC), their choices between two "
    "responses (pairs) and a demographic description. A **direction** is the item's preference "
    "direction written as profile labels (e.g. `Likes humor, Concise communication style`); "
    "*Derive from persona* on the Preferences tab averages them into the slider vector.")


def summary(persona: Persona) -> str:
    """One line on a persona: item counts and the profile its directions imply."""
    profile = persona.profile()
    demo = "with" if persona.demographics else "no"
    text = f"**{len(persona.ugc)} UGC items · {len(persona.pairs)} pair items · {demo} demographics.** "
    return text + (f"Its directions read: *{profile}*" if profile else "Its items carry no directions.")


def persona_values(session: Session) -> list:
    """Values for the persona widgets, in `build_persona`'s output order (without the dropdown)."""
    persona = session.persona_obj()
    ugc, pairs = personas.persona_to_rows(persona)
    return [ugc or [["", "", ""]], pairs or [["", "", "", ""]], persona.demographics or "",
            personas.direction_to_text(persona.direction), personas.dumps(session.persona),
            summary(persona)]


def saved_names(db_path: str) -> list[str]:
    with Store.open(db_path) as store:
        return store.list_personas()


def with_persona(session: Session, persona: Persona) -> Session:
    """The session with a newly loaded persona; the sliders follow its directions when it has any."""
    vector = personas.derive_vector(persona)
    return session.copy(persona=persona_to_dict(persona), **({"vector": vector} if vector else {}))


def build_persona(ctx: AppContext, state: gr.State) -> View:
    values = persona_values(ctx.defaults)
    gr.Markdown(PERSONA_HELP)
    with gr.Row():
        example = gr.Dropdown([(personas.title(n), n) for n in ctx.examples], value=None, scale=3,
                              label="Example personas", elem_id="example-persona")
        load_example = gr.Button("Load example", scale=1, elem_id="load-example")
    with gr.Row():
        name = gr.Textbox(label="Save as", placeholder="a name", scale=2)
        save = gr.Button("Save to store", scale=1)
        saved = gr.Dropdown([], label="Saved personas", scale=2, elem_id="saved-personas")
        load_saved = gr.Button("Load", scale=1)
        delete_saved = gr.Button("Delete", scale=1, variant="stop")
    with gr.Row():
        upload = gr.UploadButton("Upload persona JSON", file_types=[".json"], scale=1)
        download = gr.Button("Download persona JSON", scale=1)
        download_file = gr.File(label="Persona file", visible=False, scale=2)
    status = gr.Markdown(values[5])
    demographics = gr.Textbox(values[2], label="Demographic description", lines=2, elem_id="demographics")
    gr.Markdown("**User-generated content** (a post by someone else, and this user's comment)")
    ugc = gr.Dataframe(values[0], headers=personas.UGC_HEADERS, type="array", interactive=True,
                       wrap=True, column_widths=["30%", "40%", "30%"], max_height=420)
    with gr.Row():
        add_ugc = gr.Button("Add UGC item", size="sm")
        remove_ugc_n = gr.Number(label="UGC item #", precision=0, minimum=1, value=1, scale=0, min_width=110)
        remove_ugc = gr.Button("Remove UGC item", size="sm")
    gr.Markdown("**Pairwise feedback** (a post, the response this user chose, the one they rejected)")
    pairs = gr.Dataframe(values[1], headers=personas.PAIR_HEADERS, type="array", interactive=True,
                         wrap=True, column_widths=["22%", "28%", "28%", "22%"], max_height=420)
    with gr.Row():
        add_pair = gr.Button("Add pair item", size="sm")
        remove_pair_n = gr.Number(label="Pair item #", precision=0, minimum=1, value=1, scale=0, min_width=110)
        remove_pair = gr.Button("Remove pair item", size="sm")
    with gr.Accordion("Persona's own direction, and the persona as AlignX JSON", open=False):
        own = gr.Textbox(values[3], label="Persona's own preference direction (optional; profile labels "
                         "or a JSON list; overrides the items' mean)")
        persona_json = gr.Code(values[4], language="json", interactive=False, elem_id="persona-json",
                               label="Persona (AlignX keys): exactly what ICA sees, and the `compare` input")

    edit_inputs = [state, ugc, pairs, demographics, own]
    edit_outputs = [state, persona_json, status]

    # Handlers: each calls one library function.
    @shows_errors
    def edit(session: Session, ugc_rows, pair_rows, demo, own_text):
        persona, warnings = personas.persona_from_rows(ugc_rows, pair_rows, demo, own_text)
        for w in warnings:
            gr.Warning(w)
        session = session.copy(persona=persona_to_dict(persona))
        return session, personas.dumps(session.persona), summary(persona)

    @shows_errors
    def do_load_example(session: Session, example_name):
        if not example_name:
            raise ValueError("Pick an example persona first.")
        gr.Info(f"Loaded {personas.title(example_name)!r}; the sliders follow its directions.")
        return with_persona(session, ctx.examples[example_name])

    @shows_errors
    def do_save(session: Session, persona_name):
        with Store.open(ctx.db_path) as store:
            replaced = store.save_persona(persona_name, session.persona)
            names = store.list_personas()
        gr.Info(f"{'Updated' if replaced else 'Saved'} persona {persona_name.strip()!r} in the store.")
        return gr.update(choices=names, value=" ".join(persona_name.split()))

    @shows_errors
    def do_load_saved(session: Session, persona_name):
        if not persona_name:
            raise ValueError("Pick a saved persona first.")
        with Store.open(ctx.db_path) as store:
            return with_persona(session, store.load_persona(persona_name))

    @shows_errors
    def do_delete(persona_name):
        if not persona_name:
            raise ValueError("Pick a saved persona to delete.")
        with Store.open(ctx.db_path) as store:
            store.delete_persona(persona_name)
            names = store.list_personas()
        gr.Info(f"Deleted {persona_name!r}.")
        return gr.update(choices=names, value=None)

    @shows_errors
    def do_upload(session: Session, file):
        return with_persona(session, parse_persona(read_upload(file)))

    def do_download(session: Session):
        return gr.update(value=write_download(personas.dumps(session.persona) + "\n", "persona"), visible=True)

    def add_row(rows, width):
        return [r for r in (rows or []) if any(str(c or "").strip() for c in r)] + [[""] * width]

    @shows_errors
    def remove_row(rows, n):
        rows = list(rows or [])
        if n is None or not 1 <= int(n) <= len(rows):
            raise ValueError(f"There is no item #{n}: the table has {len(rows)} rows.")
        return rows[: int(n) - 1] + rows[int(n):]

    # Register listeners
    # demographics: .change, since Gradio's textbox fires no input event when text is deleted.
    for trigger in (ugc.input, pairs.input, demographics.change, own.blur, own.submit):
        trigger(edit, edit_inputs, edit_outputs, trigger_mode="always_last", show_progress="hidden", **PRIVATE)
    add_ugc.click(lambda rows: add_row(rows, 3), ugc, ugc, **QUIET)
    add_pair.click(lambda rows: add_row(rows, 4), pairs, pairs, **QUIET)
    for button, table, number in ((remove_ugc, ugc, remove_ugc_n), (remove_pair, pairs, remove_pair_n)):
        button.click(remove_row, [table, number], table, **QUIET).success(edit, edit_inputs, edit_outputs, **QUIET)
    reloads = [
        load_example.click(do_load_example, [state, example], state, **PRIVATE),
        load_saved.click(do_load_saved, [state, saved], state, **PRIVATE),
        upload.upload(do_upload, [state, upload], state, **PRIVATE),
    ]
    save.click(do_save, [state, name], saved, **PRIVATE)
    delete_saved.click(do_delete, saved, saved, **PRIVATE)
    download.click(do_download, state, download_file, **PRIVATE)

    def fill(session: Session) -> list:
        return persona_values(session)

    return View(outputs=[ugc, pairs, demographics, own, persona_json, status], fill=fill, reloads=reloads,
                components={"persona_json": persona_json, "saved": saved,
                            "refresh_saved": lambda: gr.update(choices=saved_names(ctx.db_path))})
