"""Tests for alignx.schema: records and personas, validation errors, loaders and savers."""

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignx.preferences import get_profile, parse_profile, verbalize
from alignx.schema import (
    KEY_DEMOGRAPHICS,
    KEY_DIRECTION,
    KEY_PAIRS,
    KEY_PERSONA_DIRECTION,
    KEY_UGC,
    PairItem,
    Persona,
    Record,
    SchemaError,
    UGCItem,
    _atomic_write,
    iter_jsonl,
    iter_records,
    load_persona,
    load_records,
    persona_from_dict,
    persona_to_dict,
    record_from_dict,
    record_to_dict,
    records_from_hf,
    save_persona,
    save_records,
)

FIXTURES = Path(__file__).parent / "fixtures"
ALIGNX = FIXTURES / "alignx_sample.json"
PSOUPS_SAMPLE = FIXTURES / "psoups_sample.json"
JSONL = FIXTURES / "records_sample.jsonl"
PERSONA = FIXTURES / "persona_example.json"
SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_PSOUPS = SHARED / "data" / "psoups" / "friendly_unfriendly.json"


def raw(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


def base_record() -> dict:
    """A valid AlignX record dict (a deep copy of the first fixture record)."""
    return copy.deepcopy(raw(ALIGNX)[0])


# ---------------------------------------------------------------------------- fixtures load


def test_alignx_fixture_fields():
    records = load_records(ALIGNX)
    assert len(records) == 3
    r = records[0]
    assert isinstance(r, Record) and r.prompt.startswith("What's a good way")
    assert len(r.direction) == 90 and all(isinstance(x, float) for x in r.direction)
    assert r.direction[16] == 1.0 and r.direction[0] == 0.5
    assert r.persona.demographics.startswith("A young")
    assert [type(it) for it in r.persona.ugc] == [UGCItem, UGCItem]
    assert [type(it) for it in r.persona.pairs] == [PairItem, PairItem]
    assert r.persona.pairs[0].chosen == "Schedule it like a meeting and track streaks."
    assert r.profile is None and r.ground_truth_persona is None and r.extra == {}
    # item directions feed the official profile: 4 items, so one 1 among 0.5s is a 0.625 mean
    assert get_profile(r.persona.item_directions()) == (
        "Concise communication style, Strong need for personal achievement, "
        "Likes a certain learning style, Likes workplace, Likes travel, Likes fitness, Likes outdoors"
    )
    # third record: empty DEMO string and empty UGC list are kept as such
    r3 = records[2]
    assert r3.persona.demographics == "" and r3.persona.ugc == []
    assert r3.extra == {KEY_UGC: []}


def test_psoups_fixture_fields():
    records = load_records(PSOUPS_SAMPLE)
    assert len(records) == 2
    for r in records:
        assert len(r.persona.pairs) == 4 and r.persona.ugc == []
        assert r.direction is None and r.persona.demographics is None
        assert all(p.direction is None for p in r.persona.pairs)
        assert verbalize(parse_profile(r.profile)) == r.profile
    assert records[1].ground_truth_persona == "Generate a response in an unfriendly manner."


def test_jsonl_fixture_extras():
    records = load_records(JSONL)
    assert [r.extra.get("idx") for r in records] == [0, 1, 2]
    assert records[0].extra == {"source": "hand-written", "idx": 0}
    assert records[2].persona.pairs == [] and records[2].extra == {KEY_PAIRS: [], "idx": 2}
    assert list(iter_jsonl(JSONL))[1]["profile"] == "Likes reading, Likes wild imagination"


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fixture", [ALIGNX, PSOUPS_SAMPLE, JSONL], ids=lambda p: p.name)
def test_to_dict_is_lossless_including_key_order(fixture):
    for record, d in zip(load_records(fixture), raw(fixture)):
        out = record_to_dict(record)
        assert out == d
        assert list(out) == list(d)
        assert Record.from_dict(d).to_dict() == d


@pytest.mark.parametrize("fixture", [ALIGNX, PSOUPS_SAMPLE, JSONL], ids=lambda p: p.name)
@pytest.mark.parametrize("ext", ["json", "jsonl", "parquet"])
def test_save_load_round_trip(tmp_path, fixture, ext):
    records = load_records(fixture)
    path = tmp_path / f"out.{ext}"
    save_records(records, path)
    back = load_records(path)
    assert back == records
    assert [record_to_dict(r) for r in back] == raw(fixture)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_parquet_directory_of_shards(tmp_path):
    records = load_records(ALIGNX) + load_records(JSONL)
    shards = tmp_path / "data"
    save_records(records[:3], shards / "train-00000.parquet")  # parent dirs are created
    save_records(records[3:], shards / "train-00001.parquet")
    assert load_records(tmp_path) == records
    assert load_records(tmp_path, limit=4) == records[:4]


def test_pandas_rows_with_numpy_arrays(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "a.parquet"
    save_records(load_records(ALIGNX), path)
    rows = pd.read_parquet(path).to_dict("records")
    assert isinstance(rows[0][KEY_DIRECTION], np.ndarray)
    records = [record_from_dict(row) for row in rows]
    assert records[:2] == load_records(ALIGNX)[:2]
    assert all(type(x) is float for x in records[0].persona.ugc[0].direction)


def test_numpy_extras_become_python():
    d = base_record() | {"scores": np.array([1, 2]), "weight": np.float32(0.5)}
    r = record_from_dict(d)
    assert r.extra == {"scores": [1, 2], "weight": 0.5}
    assert type(r.extra["scores"][0]) is int
    json.dumps(record_to_dict(r))


def test_optional_keys_only_emitted_when_present():
    d = {"prompt": "p", "chosen": "c", "rejected": "r"}
    assert record_to_dict(record_from_dict(d)) == d
    with_nulls = d | {"profile": None, KEY_DIRECTION: None, KEY_DEMOGRAPHICS: None, KEY_UGC: None}
    r = record_from_dict(with_nulls)
    assert r.profile is None and r.direction is None and r.persona.demographics is None
    assert record_to_dict(r) == with_nulls
    # a value set later replaces the remembered null
    r.profile = "Likes humor"
    assert record_to_dict(r)["profile"] == "Likes humor"


def test_extra_keys_preserved_in_order():
    d = {"id": "u1", "prompt": "p", "chosen": "c", "rejected": "r", "meta": {"a": [1, None]}, "z": 1}
    out = record_to_dict(record_from_dict(d))
    assert out == d
    assert list(out) == ["prompt", "chosen", "rejected", "id", "meta", "z"]


def test_record_persona_direction_extension():
    r = load_records(ALIGNX)[0]
    r.persona.direction = tuple([0.5] * 89 + [1.0])
    d = record_to_dict(r)
    assert d[KEY_PERSONA_DIRECTION][-1] == 1.0
    assert record_from_dict(d) == r


# ---------------------------------------------------------------------------- personas


def test_persona_round_trip(tmp_path):
    persona = load_persona(PERSONA)
    assert persona.demographics.startswith("A young")
    assert len(persona.ugc) == 1 and len(persona.pairs) == 2
    assert persona.direction is not None and persona.direction[73] == 1.0
    assert persona_to_dict(persona) == raw(PERSONA)
    assert get_profile([persona.direction]) == (
        "Young, Concise communication style, Likes humor, Likes outdoors, Likes camping"
    )
    out = tmp_path / "sub" / "p.json"
    save_persona(persona, out)
    assert load_persona(out) == persona
    assert Persona.from_dict(persona.to_dict()) == persona


def test_persona_minimal_and_unknown_keys():
    assert persona_from_dict({}) == Persona()
    assert persona_to_dict(Persona()) == {KEY_UGC: [], KEY_PAIRS: []}
    with pytest.raises(SchemaError) as info:
        persona_from_dict({KEY_UGC: [], "name": "x"}, source="p.json")
    assert info.value.field == "name"
    assert str(info.value).startswith("p.json: field 'name': unknown persona key; expected only")
    assert persona_from_dict({KEY_UGC: [], "name": "x"}, strict=False) == Persona()
    with pytest.raises(SchemaError, match=r"field 'Preference Direction': expected 90 values, got 2"):
        persona_from_dict({KEY_DIRECTION: [0, 1]})


# ---------------------------------------------------------------------------- validation errors

PAIR_DIR = f"{KEY_PAIRS}[1].{KEY_DIRECTION}"


def mutate(path, value):
    """A valid record with one value replaced (path: list of keys/indices; value DELETE removes)."""
    d = base_record()
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


DELETE = object()
BAD_VEC = [0.5] * 4 + ["a"] + [0.5] * 85


@pytest.mark.parametrize(
    "path, value, field, reason",
    [
        (["prompt"], DELETE, "prompt", "missing required key 'prompt'"),
        (["chosen"], 3, "chosen", "expected a string, got int"),
        (["rejected"], None, "rejected", "expected a string, got null"),
        (["profile"], ["x"], "profile", "expected a string, got list"),
        ([KEY_DEMOGRAPHICS], 5, KEY_DEMOGRAPHICS, "expected a string, got int"),
        ([KEY_UGC], "text", KEY_UGC, "expected a list, got str"),
        ([KEY_PAIRS], {"a": 1}, KEY_PAIRS, "expected a list, got dict"),
        ([KEY_PAIRS, 1], "text", f"{KEY_PAIRS}[1]", "expected an object (dict), got str"),
        ([KEY_PAIRS, 0, "rejected"], DELETE, f"{KEY_PAIRS}[0].rejected", "missing required key 'rejected'"),
        ([KEY_UGC, 1, "comment"], 1.5, f"{KEY_UGC}[1].comment", "expected a string, got float"),
        ([KEY_PAIRS, 1, KEY_DIRECTION], [0.5] * 89, PAIR_DIR, "expected 90 values, got 89"),
        ([KEY_PAIRS, 1, KEY_DIRECTION], BAD_VEC, PAIR_DIR, "index 4: expected a number, got 'a'"),
        ([KEY_PAIRS, 1, KEY_DIRECTION, 4], float("nan"), PAIR_DIR, "index 4: expected a finite number, got nan"),
        ([KEY_PAIRS, 1, KEY_DIRECTION, 4], float("-inf"), PAIR_DIR, "index 4: expected a finite number, got -inf"),
        ([KEY_PAIRS, 1, KEY_DIRECTION, 9], 1.5, PAIR_DIR, "index 9: value 1.5 is outside [0, 1]"),
        ([KEY_DIRECTION], "0.5", KEY_DIRECTION, "expected a list of 90 numbers, got str"),
        ([KEY_DIRECTION], np.zeros(91), KEY_DIRECTION, "expected 90 values, got 91"),
    ],
)
def test_record_errors(path, value, field, reason):
    with pytest.raises(SchemaError) as info:
        record_from_dict(mutate(path, value), source="friendly.json", index=17)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.source, err.index, err.field, err.reason) == ("friendly.json", 17, field, reason)
    assert str(err) == f"friendly.json: record 17: field {field!r}: {reason}"


def test_required_keys_are_checked_first():
    d = mutate(["prompt"], DELETE) | {KEY_UGC: "not a list"}
    with pytest.raises(SchemaError, match="field 'prompt': missing required key"):
        record_from_dict(d)


def test_item_keys_beyond_the_schema_are_ignored():
    d = mutate([KEY_PAIRS, 0, "score"], 3)
    d[KEY_PAIRS][1][KEY_DIRECTION] = None  # a null item direction reads as absent
    r = record_from_dict(d)
    assert r.persona.pairs[1].direction is None
    assert "score" not in record_to_dict(r)[KEY_PAIRS][0]


def test_record_not_a_dict():
    with pytest.raises(SchemaError) as info:
        record_from_dict(["prompt"])
    assert info.value.field is None and info.value.index is None
    assert str(info.value) == "<input>: expected an object (dict), got list"


def test_schema_error_pickles():
    err = SchemaError("expected 90 values, got 89", source="a.json", index=3, field="x", line=7)
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) == "a.json: line 7: record 3: field 'x': expected 90 values, got 89"
    assert (clone.source, clone.index, clone.field, clone.line) == ("a.json", 3, "x", 7)


# ---------------------------------------------------------------------------- file errors


def test_json_file_bad_record_fails_whole_load(tmp_path):
    data = raw(ALIGNX)
    data[1][KEY_PAIRS][2][KEY_DIRECTION] = [0.5] * 89
    path = tmp_path / "friendly.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError) as info:
        load_records(path)
    err = info.value
    assert (err.source, err.index, err.field) == (str(path), 1, f"{KEY_PAIRS}[2].{KEY_DIRECTION}")
    assert str(err) == (
        f"{path}: record 1: field 'Pair-wise Comparative Feedback[2].Preference Direction': "
        "expected 90 values, got 89"
    )
    assert len(load_records(path, limit=1)) == 1  # only the loaded records are validated


def test_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"prompt": "p",\n   "chosen": }\n]')
    with pytest.raises(SchemaError) as info:
        load_records(path)
    assert info.value.line == 3 and info.value.index is None
    assert str(info.value) == f"{path}: line 3: invalid JSON at column 14: Expecting value"


def test_json_top_level_must_be_a_list(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps(base_record()))
    with pytest.raises(SchemaError, match="expected a JSON list of records, got dict"):
        load_records(path)


def test_jsonl_errors_name_the_line(tmp_path):
    good = json.dumps(base_record())
    path = tmp_path / "r.jsonl"
    path.write_text(f"{good}\n\n{good}\n{{not json\n")
    with pytest.raises(SchemaError) as info:
        load_records(path)
    assert info.value.line == 4
    assert str(info.value).startswith(f"{path}: line 4: invalid JSON at column 2:")

    path.write_text(f"{good}\n\n{good}\n" + json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(SchemaError) as info:
        load_records(path)
    err = info.value
    assert (err.line, err.index, err.field) == (4, 2, "rejected")
    assert str(err) == f"{path}: line 4: record 2: field 'rejected': missing required key 'rejected'"


def test_parquet_bad_record_names_shard(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    shard = tmp_path / "s.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "chosen": ["c", "c"], "rejected": ["r", None]}), shard)
    with pytest.raises(SchemaError) as info:
        load_records(tmp_path)
    assert (info.value.source, info.value.index, info.value.field) == (str(shard), 1, "rejected")


def test_missing_files_and_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match="records file not found: .*nope.json"):
        load_records(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="persona file not found"):
        load_persona(tmp_path / "nope.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*.parquet files under directory"):
        load_records(tmp_path / "empty")
    csv = tmp_path / "r.csv"
    csv.write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format of .*r.csv.* pass format="):
        load_records(csv)
    txt = tmp_path / "r.txt"
    txt.write_text(JSONL.read_text())
    assert len(load_records(txt, format="jsonl")) == 3
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        load_records(txt, format="yaml")
    with pytest.raises(IsADirectoryError):
        save_records([], tmp_path)


def test_iter_records_is_lazy():
    it = iter_records(ALIGNX)
    assert next(it).prompt.startswith("What's")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    save_records(load_records(ALIGNX), path)
    before = path.read_bytes()

    def broken(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _atomic_write(path, broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    bad = load_records(ALIGNX)[0]
    bad.extra["x"] = {1, 2}  # not JSON-serializable: fails before anything is written
    with pytest.raises(TypeError):
        save_records([bad], path)
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------- shared data


@pytest.mark.skipif(not SHARED_PSOUPS.exists(), reason="shared P-SOUPS data not available")
def test_load_shared_psoups():
    records = load_records(SHARED_PSOUPS)
    assert len(records) == 600
    assert all(len(r.persona.pairs) == 4 and r.profile and r.ground_truth_persona for r in records)
    assert [record_to_dict(r) for r in records] == raw(SHARED_PSOUPS)


# ---------------------------------------------------------------------------- datasets hook


def test_records_from_hf(tmp_path):
    datasets = pytest.importorskip("datasets")
    records = load_records(ALIGNX)
    path = tmp_path / "data" / "train.parquet"
    save_records(records, path)
    cache = str(tmp_path / "cache")
    assert records_from_hf(str(path), cache_dir=cache) == records
    assert records_from_hf(tmp_path / "data", cache_dir=cache, limit=2) == records[:2]
    assert records_from_hf(str(ALIGNX), cache_dir=cache) == records
    ds = datasets.Dataset.from_list([record_to_dict(r) for r in records])
    assert records_from_hf(ds) == records
    assert records_from_hf(datasets.DatasetDict({"test": ds}), split="test") == records
    rows = [record_to_dict(r) for r in records]
    rows[1]["chosen"] = None
    with pytest.raises(SchemaError) as info:
        records_from_hf(datasets.Dataset.from_list(rows))
    assert (info.value.index, info.value.field) == (1, "chosen")


# ---------------------------------------------------------------------------- import hygiene


def test_no_heavy_imports():
    code = (
        "import sys, alignx.preferences, alignx.schema; "
        "bad = [m for m in ('torch', 'gradio', 'sqlite3', 'pyarrow', 'pandas', 'datasets') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_persona_preference_vector():
    from alignx.preferences import mean_direction, profile_from_vector

    assert Persona().preference_vector() is None and Persona().profile() is None
    own = tuple([1.0] + [0.5] * 89)
    item = tuple([0.5] * 73 + [1.0] + [0.5] * 16)
    p = Persona(ugc=[UGCItem("p", "c", item)], pairs=[PairItem("p", "a", "b", None), PairItem("p", "a", "b", own)])
    v = p.preference_vector()
    assert v.dtype == np.float32 and v.shape == (90,)
    np.testing.assert_array_equal(v, mean_direction([item, own]))  # items without a direction are skipped
    assert p.profile() == profile_from_vector(v) == get_profile([item, own]) == "Young, Likes humor"
    p.direction = own  # the persona's own direction wins
    np.testing.assert_array_equal(p.preference_vector(), np.float32(own))
    assert p.profile() == "Young"
    # float32 semantics: a mean of exactly 2/5 reads neutral (0.4000000059 > 0.4)
    older_humor = tuple([0.0] + [0.5] * 72 + [1.0] + [0.5] * 16)
    five = Persona(ugc=[UGCItem("p", "c", d) for d in [older_humor, item, item, item, item]])
    assert five.preference_vector()[0] == np.float32(0.4)
    assert five.profile() == "Likes humor"
