"""Annotation (alignx.annotation and the annotation tables of alignx.store), on real SQLite files.

Schema and migrations, durable-write settings, queue files (JSONL / CSV, size cap, clear errors),
the annotation flow (next item, shown order, choices, undo, progress, own vs target persona),
export -> import -> export round trips (AlignX JSONL and a `datasets` folder), pair generation on
the real embedded backbone, and the per-user adapter job (a real, tiny LoRA-DPO run) with the
Compare tab's before / after batch. A stand-in backbone is used only in the flow unit test.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from alignx import annotation, personas
from alignx.annotation import AdapterOptions, AnnotationError, StudySettings
from alignx.schema import Persona, load_records
from alignx.store import KEY_ANNOTATION, MIGRATIONS, Store, StoreError

from conftest import FIXTURES

CHOICES_SQL = """CREATE TABLE "annotation_choices" (
   "id" INTEGER PRIMARY KEY,
   "pair_id" INTEGER NOT NULL REFERENCES "annotation_pairs"("id"),
   "annotator" TEXT NOT NULL,
   "session_id" TEXT NOT NULL,
   "shown_order" TEXT NOT NULL,
   "choice" TEXT NOT NULL,
   "rationale" TEXT NOT NULL,
   "persona_mode" TEXT NOT NULL,
   "persona" TEXT NOT NULL,
   "vector" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "undone_at" TEXT
)"""
ACTIVE_INDEX_SQL = ('CREATE UNIQUE INDEX "idx_annotation_choices_active" ON "annotation_choices" '
                    '("pair_id", "annotator") WHERE "undone_at" IS NULL')
OFFICIAL_KEYS = ["prompt", "chosen", "rejected", "Preference Direction", "Demographic Information",
                 "User-Generated Content", "Pair-wise Comparative Feedback"]
NAMES = ["m001_personas", "m002_annotators", "m003_annotation_queues", "m004_annotation_choices",
         "m005_user_adapters"]


class StandInBackbone:
    """Records the generate calls; answers with a text made from the prompt (unit test only)."""

    def __init__(self):
        self.calls = []

    def build_prompt(self, method, prompt, *, persona=None, profile=None):
        return f"[{method}] {prompt}"

    def adapter_for(self, method):
        return None if method == "universal" else method

    def generate(self, prompts, adapters, **kwargs):
        self.calls.append((list(prompts), list(adapters), kwargs))
        return [f"answer to {p}" for p in prompts]


def given_queue(n: int) -> list[dict]:
    return [{"prompt": f"prompt {i}", "responses": [f"first {i}", f"second {i}"]} for i in range(n)]


@pytest.fixture
def db(tmp_path):
    return tmp_path / "alignx.db"


# ---------------------------------------------------------------------------- schema


def test_migrations_schema_and_durable_write_settings(db):
    with Store.open(db) as store:
        assert store.applied_migrations() == NAMES
        assert store.db["annotation_choices"].schema == CHOICES_SQL
        index = store.db.execute("select sql from sqlite_master where name = 'idx_annotation_choices_active'")
        assert index.fetchone()[0] == ACTIVE_INDEX_SQL
        assert store.db.journal_mode == "wal"
        assert store.db.execute("pragma synchronous").fetchone()[0] == 2  # FULL


def test_an_old_database_is_upgraded_in_order(db):
    with Store.open(db) as store:
        store.db.execute("delete from _migrations where name != 'm001_personas'")
        for table in ("user_adapters", "annotation_choices", "annotation_pairs", "annotation_items",
                      "annotation_queues", "annotators"):
            store.db[table].drop()
        store.db.conn.commit()
        store.save_persona("kept", Persona(demographics="A chef."))
    with Store.open(db) as store:
        assert store.applied_migrations() == NAMES
        assert store.load_persona("kept").demographics == "A chef."
    assert [m.name for m in MIGRATIONS._migrations][: len(NAMES)] == NAMES


# ---------------------------------------------------------------------------- queue files


def test_queue_files_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"prompt": "One?"}\n\n"Two?"\n{"prompt": "Three?", "responses": ["x", "y"], '
                     '"sources": ["m1", "m2"]}\n')
    assert annotation.read_queue_file(jsonl) == [
        {"prompt": "One?"}, {"prompt": "Two?"}, {"prompt": "Three?", "responses": ["x", "y"], "sources": ["m1", "m2"]}]
    csv_file = tmp_path / "q.csv"
    csv_file.write_text('Prompt,response_1,response_2\n"Hi, there?",,\nWhy?,a,b\n')
    assert annotation.read_queue_file(csv_file) == [{"prompt": "Hi, there?"},
                                                    {"prompt": "Why?", "responses": ["a", "b"]}]
    name, n = annotation.load_queue(tmp_path / "alignx.db", csv_file)
    assert (name, n) == ("q", 2)
    shipped = annotation.asset_queues()["everyday-prompts"]
    assert len(annotation.read_queue_file(shipped)) == 32


BAD_QUEUES = [
    ("q.txt", "hello\n", "upload a .jsonl or .csv file"),
    ("q.jsonl", '{"prompt": "ok"}\n{"prompt": \n', "q.jsonl line 2: not valid JSON"),
    ("q.jsonl", '{"text": "no prompt"}\n', "q.jsonl line 1: the prompt is missing or empty"),
    ("q.jsonl", '[1, 2]\n', "expected an object"),
    ("q.jsonl", '{"prompt": "p", "responses": ["only one"]}\n', "'responses' must be two non-empty strings"),
    ("q.jsonl", "\n\n", "holds no prompts"),
    ("q.csv", "question\nwhy?\n", "needs a 'prompt' column (found: question)"),
    ("q.csv", "prompt,response_1,response_2\nwhy?,a,\n", "q.csv line 2: give both response_1 and response_2"),
    ("q.jsonl", '{"prompt": "' + "x" * 5000 + '"}\n', "at most 4,000"),
]


@pytest.mark.parametrize("name,text,message", BAD_QUEUES, ids=[m[:24] for *_, m in BAD_QUEUES])
def test_bad_queue_files_are_clear_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        annotation.read_queue_file(path)


def test_queue_size_cap_and_encoding(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text('{"prompt": "p"}\n' * 80_000)
    with pytest.raises(AnnotationError, match="capped at 1,000,000 bytes"):
        annotation.read_queue_file(big)
    many = tmp_path / "many.jsonl"
    many.write_text('"p"\n' * 1001)
    with pytest.raises(AnnotationError, match="1,001 prompts; a queue holds at most 1,000"):
        annotation.read_queue_file(many)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match="not UTF-8"):
        annotation.read_queue_file(latin)


# ---------------------------------------------------------------------------- the flow


def test_flow_generation_order_choice_undo_progress(db):
    bb = StandInBackbone()
    guide = personas.load_examples()["outdoor-guide"]
    targets = {"outdoor-guide": guide}
    with pytest.raises(StoreError, match="No annotator named 'ana'"):
        annotation.next_item(db, annotator="ana", queue="everyday-prompts", session_id="s1",
                             settings=StudySettings(), get_backbone=lambda: bb)
    annotation.register_annotator(db, "ana", guide, [0.5] * 89 + [1.0])
    kw = dict(queue="everyday-prompts", settings=StudySettings(max_new_tokens=8), get_backbone=lambda: bb,
              model_tag="stand-in", targets=targets)
    shown = annotation.next_item(db, annotator="ana", session_id="s1", **kw)
    assert shown["position"] == 1 and shown["progress"] == [0, 32] and shown["persona_mode"] == "own"
    # one batched call, one row per method, each with its own adapter
    (prompts, adapters, decoding), = bb.calls
    assert prompts == ["[pba] Any tips for a weekend trip?", "[universal] Any tips for a weekend trip?"]
    assert adapters == ["pba", None] and decoding["max_new_tokens"] == 8
    texts = {"1": "answer to " + prompts[0], "2": "answer to " + prompts[1]}
    assert (shown["a"], shown["b"]) == (texts[shown["order"][0]], texts[shown["order"][1]])

    saved = annotation.save_choice(db, annotator="ana", pair_id=shown["pair_id"], order=shown["order"],
                                   choice="A", rationale="warmer ☀", session_id="s1")
    assert saved["progress"] == [1, 32]
    with pytest.raises(StoreError, match="already judged this pair"):
        annotation.save_choice(db, annotator="ana", pair_id=shown["pair_id"], order=shown["order"],
                               choice="B", session_id="s1")
    # Another annotator, judging as a target persona with the same vector, shares the pair only when
    # the condition is the same: here the profile differs, so a new pair is generated.
    other = annotation.next_item(db, annotator="bo", session_id="s2", target="outdoor-guide", **kw)
    assert other["persona_mode"] == "target" and len(bb.calls) == 2
    # ... and the same annotator in a new session gets item 2
    second = annotation.next_item(db, annotator="ana", session_id="s1", **kw)
    assert second["position"] == 2
    annotation.save_choice(db, annotator="ana", pair_id=second["pair_id"], order=second["order"], choice="skip",
                           session_id="s1")
    undone = annotation.undo_last(db, "ana", "s1")
    assert undone["undone"]["choice"] == "skip" and undone["progress"] == [1, 32]
    again = annotation.next_item(db, annotator="ana", session_id="s1", **kw)
    assert (again["pair_id"], again["order"], again["position"]) == (second["pair_id"], second["order"], 2)
    assert len(bb.calls) == 3  # the undone item's pair is reused, not generated again
    assert annotation.undo_last(db, "nobody", "s1") == {"undone": None}

    with Store.open(db) as store:
        (row,) = store.choices(annotator="ana")
        record = store.export_records()[0]
    assert row["shown_order"] == shown["order"] and row["rationale"] == "warmer ☀" and row["persona_mode"] == "own"
    assert record.chosen == shown["a"] and record.rejected == shown["b"]
    assert record.direction[-1] == 1.0 and record.persona == guide


def test_shown_order_is_balanced_and_recorded():
    orders = [annotation.shown_order(0, "ana", pair_id) for pair_id in range(200)]
    assert 70 < orders.count("12") < 130
    assert orders == [annotation.shown_order(0, "ana", pair_id) for pair_id in range(200)]  # reproducible
    seeds = {annotation.item_seed(0, f"prompt {i}") for i in range(50)}
    assert len(seeds) == 50 and annotation.item_seed(0, "prompt 1") == annotation.item_seed(0, "prompt 1")


def test_end_of_queue_and_bad_requests(db):
    with Store.open(db) as store:
        store.add_queue("two", given_queue(2))
    for i in range(2):
        shown = annotation.next_item(db, annotator="x", queue="two", session_id="s", settings=StudySettings(),
                                     target="g", targets={"g": Persona()})
        annotation.save_choice(db, annotator="x", pair_id=shown["pair_id"], order=shown["order"], choice="tie",
                               session_id="s", target="g", targets={"g": Persona()})
    done = annotation.next_item(db, annotator="x", queue="two", session_id="s", settings=StudySettings(),
                                target="g", targets={"g": Persona()})
    assert done == {"done": True, "queue": "two", "progress": [2, 2]}
    with pytest.raises(AnnotationError, match="No queue named 'nope'"):
        annotation.next_item(db, annotator="x", queue="nope", session_id="s", settings=StudySettings())
    with pytest.raises(AnnotationError, match="Unknown target persona 'zz'"):
        annotation.save_choice(db, annotator="x", pair_id=1, order="12", choice="A", session_id="s", target="zz",
                               targets={"g": Persona()})
    with pytest.raises(AnnotationError, match="Choice must be one of"):
        annotation.save_choice(db, annotator="x", pair_id=1, order="12", choice="maybe", session_id="s")
    with pytest.raises(StoreError, match="Shown order must be '12'"):
        annotation.save_choice(db, annotator="x", pair_id=1, order="ab", choice="A", session_id="s", target="g",
                               targets={"g": Persona()})
    with pytest.raises(StoreError, match="No response pair with id 999"):
        annotation.save_choice(db, annotator="x", pair_id=999, order="12", choice="A", session_id="s", target="g",
                               targets={"g": Persona()})
    with pytest.raises(AnnotationError, match="Two samples of one method need a temperature above 0"):
        StudySettings(method_1="pba", method_2="pba", temperature=0)
    with pytest.raises(AnnotationError, match="Unknown study setting 'colour'"):
        StudySettings.from_json('{"colour": 1}')


# ---------------------------------------------------------------------------- export / import


def filled_store(db) -> None:
    """Two queues, three annotators, every kind of choice, own and target personas, an undone one."""
    examples = personas.load_examples()
    with Store.open(db) as store:
        store.add_queue("q1", given_queue(6))
        store.add_queue("q2", [{"prompt": "Ünïcode ☀ prompt", "responses": ["α", "β"],
                                "sources": ["m-a", "m-b"]}])
        assert store.add_pair(1, "cond-x", ["x", "y"], ["pba", "universal"], {})["condition"] == "given"
        store.add_queue("q3", [{"prompt": "generated"}])  # item 8: no given pair
        pair = store.add_pair(8, "cond-x", ["gen one", "gen two"], ["pba", "universal"],
                              {"method_1": "pba", "temperature": 0.7})
        assert store.add_pair(8, "cond-x", ["other", "texts"], ["pba", "universal"], {}) == pair  # first one kept
        store.save_annotator("ana", examples["teen-gamer"], [0.25] * 45 + [0.75] * 45)
        plan = [("ana", 2, "12", "A", "clear"), ("ana", 3, "21", "B", ""), ("ana", 4, "12", "tie", ""),
                ("ana", 5, "21", "both_bad", "both rude"), ("ana", 6, "12", "skip", ""),
                ("ana", pair["id"], "21", "A", "gen"), ("bo", 2, "21", "A", ""), ("bo", 7, "12", "B", "☀"),
                ("cy", 3, "12", "B", "")]
        for who, pair_id, order, choice, why in plan:
            persona = examples["outdoor-guide"] if who != "ana" else examples["teen-gamer"]
            store.add_choice(pair_id=pair_id, annotator=who, session_id=f"s-{who}", shown_order=order, choice=choice,
                             rationale=why, persona_mode="own" if who == "ana" else "target", persona=persona,
                             vector=[0.5] * 90 if who != "ana" else [0.25] * 45 + [0.75] * 45)
        store.add_choice(pair_id=4, annotator="cy", session_id="s-cy", shown_order="12", choice="A")
        store.undo_last_choice("cy", "s-cy")


def test_export_records_have_the_official_keys_and_the_right_chosen(db):
    filled_store(db)
    with Store.open(db) as store:
        prefs = [r.to_dict() for r in store.export_records()]
        every = store.export_records(include="all")
    assert len(prefs) == 6 and len(every) == 9  # the undone choice is out; ties etc. only with "all"
    assert list(prefs[0])[:7] == OFFICIAL_KEYS and list(prefs[0])[-1] == KEY_ANNOTATION
    first = prefs[0]  # ana, pair 2 (item 1 of q1), shown "12", chose A -> response 1
    assert (first["prompt"], first["chosen"], first["rejected"]) == ("prompt 1", "first 1", "second 1")
    assert first[KEY_ANNOTATION]["rationale"] == "clear" and first["Preference Direction"][-1] == 0.75
    second = prefs[1]  # shown "21", chose B -> response 1 was B
    assert (second["chosen"], second["rejected"]) == ("first 2", "second 2")
    assert prefs[2][KEY_ANNOTATION]["settings"] == {"method_1": "pba", "temperature": 0.7}
    assert next(p for p in prefs if p["prompt"].startswith("Ünï"))["chosen"] == "β"


def test_jsonl_round_trip_is_byte_identical(db, tmp_path):
    filled_store(db)
    for include in ("all", "preferences"):
        first, second = tmp_path / f"first-{include}.jsonl", tmp_path / f"second-{include}.jsonl"
        with Store.open(db) as store:
            n = store.export_jsonl(first, include=include)
        with Store.open(tmp_path / f"copy-{include}.db") as copy:
            assert copy.import_file(first) == n
            assert copy.import_file(first) == 0  # importing again changes nothing
            copy.export_jsonl(second, include=include)
            assert copy.load_annotator("ana")[1][-1] == 0.75
        assert second.read_bytes() == first.read_bytes()
        assert len(load_records(first)) == n


def test_dataset_round_trip_is_identical(db, tmp_path):
    pytest.importorskip("datasets")
    filled_store(db)
    with Store.open(db) as store:
        store.export_jsonl(tmp_path / "original.jsonl", include="all")
        ds = store.export_dataset(tmp_path / "ds", include="all")
    assert ds.num_rows == 9 and "Pair-wise Comparative Feedback" in ds.column_names
    with Store.open(tmp_path / "copy.db") as copy:
        assert copy.import_file(tmp_path / "ds") == 9
        copy.export_jsonl(tmp_path / "again.jsonl", include="all")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "original.jsonl").read_bytes()
    zipped = annotation.export(db, tmp_path / "out", "dataset", queue="q1")
    assert zipped.suffix == ".zip" and zipped.stat().st_size > 0
    with pytest.raises(AnnotationError, match="Export format must be"):
        annotation.export(db, tmp_path / "out", "csv")


def test_plain_alignx_records_import_and_conflicts(db, tmp_path):
    with Store.open(db) as store:
        assert store.import_file(FIXTURES / "records_sample.jsonl", annotator="legacy") == 3
        exported = store.export_records(annotator="legacy")
        original = load_records(FIXTURES / "records_sample.jsonl")
        assert [(r.prompt, r.chosen, r.rejected) for r in exported] == \
            [(r.prompt, r.chosen, r.rejected) for r in original]
        store.export_jsonl(tmp_path / "legacy.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "legacy.jsonl").read_text().splitlines()]
    lines[0][KEY_ANNOTATION]["choice"] = "tie"  # same pair and texts, another judgement
    conflicting = tmp_path / "conflicting.jsonl"
    conflicting.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with Store.open(db) as store, pytest.raises(StoreError, match="record 0: 'legacy' already has another choice"):
        store.import_file(conflicting)
    lines[0][KEY_ANNOTATION]["shown_order"] = "31"
    conflicting.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with Store.open(db) as store, pytest.raises(StoreError, match="record 0: Annotation.shown_order must be one of"):
        store.import_file(conflicting)
    with Store.open(db) as store:  # all or nothing: the failed imports added nothing
        assert len(store.choices()) == 3


# ---------------------------------------------------------------------------- real model


def test_pairs_from_the_real_backbone(backbone, db):
    with Store.open(db) as store:
        store.add_queue("real", [{"prompt": "Any tips for a weekend trip?"}])
    kw = dict(annotator="g", queue="real", session_id="s", get_backbone=lambda: backbone, model_tag="nf4",
              target="g", targets={"g": personas.load_examples()["outdoor-guide"]})
    shown = annotation.next_item(db, settings=StudySettings("pba", "universal", max_new_tokens=6, temperature=0), **kw)
    assert shown["a"].strip() and shown["b"].strip() and shown["sources"] == ["pba", "universal"]
    two_samples = StudySettings("universal", "universal", max_new_tokens=6, temperature=1.0, seed=3)
    samples = annotation.generate_pair(backbone, "Any tips for a weekend trip?", two_samples, Persona(), [0.5] * 90)
    assert len(samples) == 2 and all(s.strip() for s in samples)
    assert StudySettings("universal", "universal", temperature=1.0).sources == ("universal#1", "universal#2")


# ---------------------------------------------------------------------------- per-user adapter


def test_user_adapter_job_trains_registers_and_serves_before_after(db):
    from alignx.backbone import BackboneConfig, check_adapter_dir, load_backbone
    from alignx.compare import InputError, parse_request, stream_user_compare, user_adapter_settings, user_adapters
    from alignx.session import BackboneSettings

    with Store.open(db) as store:
        store.add_queue("q", given_queue(5))
        store.save_annotator("ana", Persona(), [0.5] * 73 + [1.0] + [0.5] * 16)
        for pair_id in range(1, 5):
            store.add_choice(pair_id=pair_id, annotator="ana", session_id="s1", shown_order="12", choice="A",
                             vector=[0.5] * 73 + [1.0] + [0.5] * 16)
        store.add_choice(pair_id=5, annotator="ana", session_id="s1", shown_order="12", choice="tie")
    with pytest.raises(AnnotationError, match="'ana' has 4 A / B choices; at least 5"):
        annotation.start_adapter_job(db, "ana", "s1", AdapterOptions(min_pairs=5))
    job = annotation.start_adapter_job(db, "ana", "s1", AdapterOptions(max_steps=1, epochs=1, lora_top_layers=1,
                                                                      max_length=128, batch_size=4))
    row = job.wait(timeout=600)
    assert row["status"] == "done", (row, job.lines[-5:])
    assert row["progress"] == 1.0 and row["n_pairs"] == 4 and row["metrics"]["final_train_loss"] > 0
    folder = check_adapter_dir(row["path"])
    assert folder == db.parent / "adapters" / "ana" / "s1"
    assert len(load_records(folder / "pairs.jsonl")) == 4
    assert annotation.adapter_text(row).startswith(f"**Adapter #{row['id']} for 'ana' is ready**")
    assert user_adapters(db) == [(f"#{row['id']} ana · session s1 · 4 pairs", row["id"])]

    # Compare's before / after: the PBA prompt on the bare backbone and with the user's adapter.
    settings = user_adapter_settings(db, BackboneSettings(), row["id"])
    assert settings.adapters == {"user": row["path"]}
    bb = load_backbone(BackboneConfig(precision="fp32", adapters=settings.adapters))
    request = parse_request("", json.dumps([0.5] * 73 + [1.0] + [0.5] * 16), "Tell me a joke.", 4, 0.0, 0)
    *_, last = stream_user_compare(bb, request)
    assert last.done and last.adapters == [None, "user"] and last.prompts[0] == last.prompts[1]
    assert "Likes humor" in last.prompts[0] and all(t.strip() for t in last.texts)
    with pytest.raises(InputError, match="Pick a per-user adapter first"):
        user_adapter_settings(db, BackboneSettings(), None)
    with pytest.raises(InputError, match="No per-user adapter with id 99"):
        user_adapter_settings(db, BackboneSettings(), 99)


def test_interrupted_job_is_settled_from_its_folder(db):
    with Store.open(db) as store:
        adapter_id = store.add_user_adapter("ana", "s1", str(db.parent / "nowhere"), 4)
        store.update_user_adapter(adapter_id, status="running", pid=2**22 + 12345)  # no such process
    row = annotation.adapter_status(db, adapter_id)
    assert row["status"] == "failed" and row["message"].startswith("interrupted")
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from user_adapters").fetchone()[0] == "failed"
