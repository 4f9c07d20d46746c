"""Tests for alignx.preferences: the 90 dimensions, profiles (official float32 semantics), parsing."""

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from alignx.preferences import (
    DIMENSIONS,
    GROUPS,
    N_DIMS,
    NEGATIVE_LABELS,
    POSITIVE_LABELS,
    Dimension,
    ProfileParseError,
    VectorError,
    describe,
    dimensions_in_group,
    get_profile,
    mean_direction,
    parse_profile,
    profile_from_vector,
    split_profile,
    ternarize,
    validate_vector,
    verbalize,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
DIMENSIONS_TSV = SHARED / "reference" / "dimensions.tsv"
PSOUPS = SHARED / "data" / "psoups" / "friendly_unfriendly.json"
FIXTURES = Path(__file__).parent / "fixtures"

ORDER = "Strong need for Order (neatness, organization, avoiding chaos)"


def neutral(**overrides):
    """A 90-vector of 0.5 with some entries set: neutral(d73=1, d5=0)."""
    v = [0.5] * N_DIMS
    for key, value in overrides.items():
        v[int(key[1:])] = value
    return v


# ---------------------------------------------------------------------------- dimensions


@pytest.mark.skipif(not DIMENSIONS_TSV.exists(), reason="shared dimensions.tsv not available")
def test_dimensions_match_reference_tsv_exactly():
    with open(DIMENSIONS_TSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == N_DIMS
    for row, dim in zip(rows, DIMENSIONS):
        assert dim == Dimension(
            int(row["index"]), row["name"], row["group"], row["positive_label"], row["negative_label"]
        )


def test_dimension_spot_checks():
    assert len(DIMENSIONS) == N_DIMS == 90
    assert (DIMENSIONS[0].positive_label, DIMENSIONS[0].negative_label) == ("Young", "Older")
    assert DIMENSIONS[15].name == "Approach to handling conflict"
    assert DIMENSIONS[15].negative_label == "Prefers avoidance, mediation, compromise to handle conflict"
    assert DIMENSIONS[23].positive_label == ORDER
    assert DIMENSIONS[23].negative_label == "Indifferent to orderliness"
    assert DIMENSIONS[40].positive_label == "Concerned about harmlessness"
    assert DIMENSIONS[89].positive_label == "Likes fashion"
    assert len(set(POSITIVE_LABELS + NEGATIVE_LABELS)) == 180


def test_dimension_label():
    dim = DIMENSIONS[73]
    assert (dim.label(1), dim.label(0), dim.label(0.5)) == ("Likes humor", "Dislikes humor", None)
    with pytest.raises(ValueError, match="dimension 73: expected 1, 0 or 0.5, got 0.7"):
        dim.label(0.7)


def test_groups():
    assert GROUPS == (
        "Demographics & Dispositional Traits",
        "Work & Life Style",
        "Core Psychological Needs",
        "Content Quality & Response Evaluation Criteria",
        "Interests",
    )
    assert len({d.group for d in DIMENSIONS}) == 6
    assert DIMENSIONS[3].group == "Demographics & Dispositional Traits (Big Five)"
    assert DIMENSIONS[3].top_group == "Demographics & Dispositional Traits"
    sizes = {g: len(dimensions_in_group(g)) for g in GROUPS}
    assert sizes == {GROUPS[0]: 7, GROUPS[1]: 12, GROUPS[2]: 21, GROUPS[3]: 7, GROUPS[4]: 43}
    needs = [d.index for d in dimensions_in_group("Core Psychological Needs")]
    assert needs == [12, 13, 18, 19, *range(23, 40)]
    big5 = dimensions_in_group("Demographics & Dispositional Traits (Big Five)")
    assert [d.index for d in big5] == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="unknown group 'Hobbies'"):
        dimensions_in_group("Hobbies")


# ---------------------------------------------------------------------------- vector -> profile


def test_hand_computed_profile():
    directions = [
        neutral(d0=1, d1=0, d23=1, d73=1),
        neutral(d0=1, d1=0, d23=1),
        neutral(d23=0, d73=1),
    ]
    # means: d0 = 2.5/3, d1 = 0.5/3, d23 = 2/3, d73 = 2.5/3, all others 0.5
    assert get_profile(directions) == f"Young, Male, {ORDER}, Likes humor"


def test_two_fifths_reads_neutral_and_three_fifths_positive():
    directions = [neutral() for _ in range(5)]
    for i, (invest, humor, saving) in enumerate(zip([1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 1])):
        directions[i][10], directions[i][73], directions[i][11] = invest, humor, saving
    mean = mean_direction(directions)
    assert mean.dtype == np.float32
    assert mean[10] == np.float32(0.4) and float(mean[10]) > 0.4  # 0.4000000059604645
    assert float(mean[73]) > 0.6  # 0.6000000238418579
    assert ternarize(mean)[[10, 73, 11]].tolist() == [0.5, 1.0, 0.0]
    # "Conservative investment" (2/5 for dim 10) must not appear.
    assert get_profile(directions) == "Bad at saving, Likes humor"


def test_thresholds_on_float32_values():
    assert ternarize(neutral(d0=0.6, d1=0.4, d2=0.61, d3=0.39, d4=0.59))[:5].tolist() == [1, 0.5, 1, 0, 0.5]
    assert ternarize(neutral(d0=1, d1=0)).tolist()[:3] == [1, 0, 0.5]


def test_fallback_max_side_wins_with_ties():
    # 1 - 0.58 = 0.42 < min 0.45: every entry equal to the max becomes positive.
    assert profile_from_vector(neutral(d73=0.58, d74=0.58, d5=0.45, d20=0.57)) == "Likes humor, Likes music"


def test_fallback_min_side_wins_with_ties():
    # 1 - 0.55 = 0.45 >= min 0.42: every entry equal to the min becomes negative.
    expected = "Low Agreeableness, Indifferent to Deference (does not care about authority)"
    assert profile_from_vector(neutral(d5=0.42, d30=0.42, d73=0.55, d40=0.43)) == expected


def test_fallback_comparison_is_float32():
    # In float32, 1 - 0.55 == 0.45 exactly, so the min side wins; in float64 1 - 0.55 < 0.45.
    directions = [neutral() for _ in range(10)]
    directions[0][73], directions[0][5] = 1, 0  # means 0.55 and 0.45
    assert get_profile(directions) == "Low Agreeableness"
    assert profile_from_vector(neutral(d73=0.55, d5=0.45)) == "Low Agreeableness"


def test_fallback_all_neutral_gives_all_negative_labels():
    # Official quirk: max == min == 0.5 and 1 - 0.5 < 0.5 is false, so every entry is the min.
    assert profile_from_vector([0.5] * N_DIMS) == ", ".join(NEGATIVE_LABELS)
    assert get_profile([[0.5] * N_DIMS] * 3) == ", ".join(NEGATIVE_LABELS)


def test_profile_is_never_empty():
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = 0.5 + rng.uniform(-0.1, 0.1, N_DIMS) * rng.integers(0, 2, N_DIMS)
        assert profile_from_vector(v) != ""


def test_verbalize():
    assert verbalize([0.5] * N_DIMS) == ""
    assert verbalize(neutral(d89=1, d0=0, d23=1)) == f"Older, {ORDER}, Likes fashion"
    with pytest.raises(VectorError, match="index 3: expected 1, 0 or 0.5, got 0.7"):
        verbalize(neutral(d3=0.7))


def test_mean_direction_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        mean_direction([])
    with pytest.raises(VectorError, match=r"directions\[1\]: expected 90 values, got 3"):
        mean_direction([neutral(), [1, 0, 1]])
    assert mean_direction(np.ones((2, N_DIMS))).tolist() == [1.0] * N_DIMS


def test_describe():
    v = neutral(d0=0.9, d1=0.05, d73=0.9, d30=0.45)
    assert describe(v, top_k=3) == [("Male", 0.05), ("Young", 0.9), ("Likes humor", 0.9)]
    assert describe(v, top_k=10)[-1] == ("Indifferent to Deference (does not care about authority)", 0.45)
    assert describe([0.5] * N_DIMS) == []


def _official_profile_torch(directions):
    """An independent torch re-statement of the official get_profile (float32 mean)."""
    import torch

    mean = torch.tensor(directions).mean(dim=0)
    ternary = [1 if x >= 0.6 else 0 if x <= 0.4 else 0.5 for x in mean.tolist()]
    if all(t == 0.5 for t in ternary):
        mx, mn = torch.max(mean), torch.min(mean)
        if 1 - mx < mn:
            ternary = torch.where(mean == mx, 1.0, 0.5).tolist()
        else:
            ternary = torch.where(mean == mn, 0.0, 0.5).tolist()
    labels = [(p if t == 1 else n) for t, p, n in zip(ternary, POSITIVE_LABELS, NEGATIVE_LABELS) if t != 0.5]
    return ", ".join(labels)


def test_matches_torch_float32_reference():
    pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 11))
        if trial % 2:  # sparse: mostly neutral, exercises the fallback
            d = np.full((n, N_DIMS), 0.5)
            d[rng.integers(0, n, 4), rng.integers(0, N_DIMS, 4)] = rng.integers(0, 2, 4)
        else:
            d = rng.choice([0.0, 0.5, 1.0], size=(n, N_DIMS))
        directions = d.tolist()
        assert get_profile(directions) == _official_profile_torch(directions)


# ---------------------------------------------------------------------------- profile -> vector


def test_parse_profile_basic():
    v = parse_profile(f"Older, {ORDER}, Likes humor")
    assert v.dtype == np.float32 and v.shape == (N_DIMS,)
    assert v[0] == 0 and v[23] == 1 and v[73] == 1
    assert int((v != 0.5).sum()) == 3
    assert parse_profile("").tolist() == [0.5] * N_DIMS
    assert parse_profile("   ").tolist() == [0.5] * N_DIMS
    # lenient about whitespace around separators and at the ends
    assert verbalize(parse_profile("  Likes humor ,Older\n")) == "Older, Likes humor"


def test_split_profile_offsets():
    text = f"Older, {ORDER}, Likes humor"
    assert split_profile(text) == [("Older", 0), (ORDER, 7), ("Likes humor", 9 + len(ORDER))]


def test_profile_fixture_round_trip():
    lines = (FIXTURES / "profiles.txt").read_text(encoding="utf-8").splitlines()
    profiles = [line for line in lines if line and not line.startswith("#")]
    assert len(profiles) >= 20
    assert any(ORDER in p for p in profiles)
    for p in profiles:
        assert verbalize(parse_profile(p)) == p


@pytest.mark.skipif(not PSOUPS.exists(), reason="shared P-SOUPS data not available")
def test_psoups_profiles_round_trip():
    records = json.loads(PSOUPS.read_text(encoding="utf-8"))
    assert len(records) == 600
    for r in records:
        assert verbalize(parse_profile(r["profile"])) == r["profile"]


def test_round_trip_property_random_vectors():
    rng = np.random.default_rng(123)
    for _ in range(300):
        t = rng.choice([0.0, 0.5, 1.0], size=N_DIMS, p=rng.dirichlet([1, 1, 1]))
        p = verbalize(t)
        assert np.array_equal(parse_profile(p), t)
        assert verbalize(parse_profile(p)) == p


@pytest.mark.parametrize(
    "text, fragment, offset, message",
    [
        ("Likes humour", "Likes humour", 0, "unknown label 'Likes humour' at character 0 (did you mean 'Likes humor'?)"),
        ("Older, Likes jazz", "Likes jazz", 7, "unknown label 'Likes jazz' at character 7"),
        ("Older,, Young", "", 6, "empty label at character 6"),
        ("Older, ", ",", 5, "trailing separator after 'Older' at character 5"),
        ("Prefers avoidance, Likes humor", "Prefers avoidance", 0, "unknown label 'Prefers avoidance'"),
        ("Older, Young", "Young", 7, "'Young' at character 7 repeats dimension 0 ('Age group'), already given as 'Older'"),
        ("Likes humor, Older, Likes humor", "Likes humor", 20, "repeats dimension 73"),
    ],
)
def test_parse_profile_errors(text, fragment, offset, message):
    with pytest.raises(ProfileParseError) as info:
        parse_profile(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.fragment, err.offset) == (fragment, offset)
    assert message in str(err)
    clone = pickle.loads(pickle.dumps(err))
    assert (str(clone), clone.fragment, clone.offset) == (str(err), fragment, offset)


def test_parse_profile_rejects_non_string():
    with pytest.raises(TypeError, match="profile must be a string"):
        parse_profile(None)


# ---------------------------------------------------------------------------- validation


def test_validate_vector_accepts_lists_tuples_and_arrays():
    for values in ([0.5] * 90, tuple([1] * 90), np.zeros(90, dtype=np.float32), np.ones(90, dtype=np.int64)):
        out = validate_vector(values)
        assert out.dtype == np.float64 and out.shape == (90,)
    arr = np.full(90, 0.5)
    assert validate_vector(arr) is not arr  # a copy


@pytest.mark.parametrize(
    "values, position, message",
    [
        ([0.5] * 89, None, "v: expected 90 values, got 89"),
        ([0.5] * 91, None, "v: expected 90 values, got 91"),
        ("0.5" * 90, None, "v: expected a list of 90 numbers, got str"),
        (None, None, "v: expected a list of 90 numbers, got NoneType"),
        (np.full((90, 1), 0.5), None, "v: expected a flat list of 90 numbers, got shape (90, 1)"),
        ([0.5] * 5 + ["x"] + [0.5] * 84, 5, "v: index 5: expected a number, got 'x'"),
        ([0.5] * 5 + [None] + [0.5] * 84, 5, "v: index 5: expected a number, got None"),
        ([0.5] * 5 + [True] + [0.5] * 84, 5, "v: index 5: expected a number, got True"),
        ([0.5] * 7 + [float("nan")] + [0.5] * 82, 7, "v: index 7: expected a finite number, got nan"),
        ([0.5] * 7 + [float("inf")] + [0.5] * 82, 7, "v: index 7: expected a finite number, got inf"),
        ([0.5] * 8 + [1.5] + [0.5] * 81, 8, "v: index 8: value 1.5 is outside [0, 1]"),
        (np.array([0.5] * 8 + [-0.1] + [0.5] * 81), 8, "v: index 8: value -0.1 is outside [0, 1]"),
    ],
)
def test_validate_vector_errors(values, position, message):
    with pytest.raises(VectorError) as info:
        validate_vector(values, what="v")
    assert str(info.value) == message
    assert info.value.position == position
    assert info.value.reason == message.removeprefix("v: ")


# ---------------------------------------------------------------------------- per-dimension status


@pytest.mark.parametrize(
    "index, value, expected",
    [
        (73, 1.0, ("positive", "Likes humor")),
        (73, 0.6, ("positive", "Likes humor")),  # float32(0.6) = 0.6000000238 >= 0.6
        (73, 0.59, ("neutral", None)),
        (73, 0.5, ("neutral", None)),
        (73, 0.4, ("neutral", None)),  # float32(0.4) = 0.4000000059 > 0.4, as in ternarize
        (73, 0.39, ("negative", "Dislikes humor")),
        (0, 0, ("negative", "Older")),
        (15, 2 / 3, ("positive", "Prefers direct communication to handle conflict")),
    ],
)
def test_dimension_status(index, value, expected):
    from alignx.preferences import dimension_status

    assert dimension_status(index, value) == expected


def test_dimension_status_agrees_with_ternarize():
    from alignx.preferences import dimension_status

    rng = np.random.default_rng(0)
    v = np.concatenate([rng.random(80), [0.4, 0.6, 0.3999, 0.6001, 0.0, 1.0, 0.5, 0.45, 0.55, 0.4000000059604645]])
    t = ternarize(v)
    for i in range(N_DIMS):
        status, label = dimension_status(i, float(v[i]))
        assert status == {1.0: "positive", 0.0: "negative", 0.5: "neutral"}[float(t[i])]
        assert label == DIMENSIONS[i].label(float(t[i]))


@pytest.mark.parametrize("index, value", [(90, 0.5), (-1, 0.5), (3, 1.5), (3, -0.1), (3, "0.5"), (3, True),
                                          (3, float("nan"))])
def test_dimension_status_errors(index, value):
    from alignx.preferences import dimension_status

    with pytest.raises(ValueError):
        dimension_status(index, value)


def test_summarize_vector():
    from alignx.preferences import summarize_vector

    v = [0.5] * N_DIMS
    assert summarize_vector(v) == {"positive": 0, "neutral": 90, "negative": 0, "fallback": True}
    v[0], v[1], v[2] = 1.0, 0.0, 0.4
    assert summarize_vector(v) == {"positive": 1, "neutral": 88, "negative": 1, "fallback": False}
