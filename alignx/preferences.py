"""The 90-dimension preference space of AlignX, and profiles built from it.

Every AlignX example carries a 90-dim "Preference Direction": per dimension ``1`` (higher levels
preferred), ``0`` (lower levels preferred) or ``0.5`` (no preference). PBA conditions the policy on
a *profile*: the mean of a persona's direction vectors, thresholded at 0.6 / 0.4 and verbalised as
a ", "-joined list of labels. This module holds the 90 dimensions (names, groups, the exact
labels of the official ``profile_utils.py``) and the vector <-> profile conversions, computed
with the official float32 semantics so that profiles match the released ones string for string.

Usage::

    from alignx.preferences import DIMENSIONS, get_profile, parse_profile, verbalize

    profile = get_profile([item_direction_1, item_direction_2])  # official get_profile()
    ternary = parse_profile(profile)                              # back to a 1 / 0 / 0.5 vector
    assert verbalize(ternary) == profile

Only stdlib and numpy are used; no torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

N_DIMS = 90
POSITIVE_THRESHOLD = 0.6  # a float32 mean >= 0.6 reads positive (1)
NEGATIVE_THRESHOLD = 0.4  # a float32 mean <= 0.4 reads negative (0); note float32(0.4) > 0.4
POSITIVE, NEGATIVE, NEUTRAL = 1.0, 0.0, 0.5
SEPARATOR = ", "


@dataclass(frozen=True)
class Dimension:
    """One preference dimension.

    Args:
        index (`int`): position in the 90-dim vector.
        name (`str`): what the dimension measures, e.g. "Approach to handling conflict".
        group (`str`): the taxonomy group, possibly with a subgroup suffix,
            e.g. "Demographics & Dispositional Traits (Big Five)".
        positive_label (`str`): profile label for value 1 (higher levels preferred).
        negative_label (`str`): profile label for value 0 (lower levels preferred).
    """

    index: int
    name: str
    group: str
    positive_label: str
    negative_label: str

    @property
    def top_group(self) -> str:
        """The group without its "(…)" subgroup suffix, one of `GROUPS`."""
        return re.sub(r"\s*\([^()]*\)$", "", self.group)

    def label(self, value: float) -> str | None:
        """The label for a ternary value: positive for 1, negative for 0, None for 0.5."""
        if value == POSITIVE:
            return self.positive_label
        if value == NEGATIVE:
            return self.negative_label
        if value == NEUTRAL:
            return None
        raise ValueError(f"dimension {self.index}: expected 1, 0 or 0.5, got {value!r}")


_DEMO = "Demographics & Dispositional Traits (demographics)"
_BIG5 = "Demographics & Dispositional Traits (Big Five)"
_LIFE = "Work & Life Style"
_NEEDS = "Core Psychological Needs"
_QUALITY = "Content Quality & Response Evaluation Criteria"
_INTERESTS = "Interests"

# (index, name, group, positive_label, negative_label): string-exact copy of the paper's
# dimension table; the labels are those of the official train/profile_utils.py.
_ROWS = (
    (0, "Age group", _DEMO, "Young", "Older"),
    (1, "Gender", _DEMO, "Female", "Male"),
    (
        2,
        "Degree of Neuroticism in the Big Five personality traits",
        _BIG5,
        "High Neuroticism",
        "Low Neuroticism",
    ),
    (
        3,
        "Degree of Extraversion in the Big Five personality traits",
        _BIG5,
        "High Extraversion",
        "Low Extraversion",
    ),
    (
        4,
        "Degree of Openness in the Big Five personality traits",
        _BIG5,
        "High Openness",
        "Low Openness",
    ),
    (
        5,
        "Degree of Agreeableness in the Big Five personality traits",
        _BIG5,
        "High Agreeableness",
        "Low Agreeableness",
    ),
    (
        6,
        "Degree of Conscientiousness in the Big Five personality traits",
        _BIG5,
        "High Conscientiousness",
        "Low Conscientiousness",
    ),
    (7, "Preference for a certain food", _LIFE, "Likes a certain food", "Dislikes a certain food"),
    (
        8,
        "Preference for a certain living environment",
        _LIFE,
        "Likes a certain living environment",
        "Dislikes a certain living environment",
    ),
    (9, "Sleep preference", _LIFE, "Likes sleep", "Dislikes sleep"),
    (10, "Investment preference", _LIFE, "Aggressive investment", "Conservative investment"),
    (11, "Saving preference", _LIFE, "Good at saving", "Bad at saving"),
    (
        12,
        "Importance placed on physical safety",
        _NEEDS,
        "Concerned about physical safety",
        "Not concerned about physical safety",
    ),
    (
        13,
        "Importance placed on environmental safety",
        _NEEDS,
        "Concerned about environmental safety",
        "Not concerned about environmental safety",
    ),
    (
        14,
        "Preference for the depth of interaction",
        _LIFE,
        "Prefers superficial interaction (casual, stress-free chat)",
        "Prefers deep interaction (discussing interests, emotional topics, etc.)",
    ),
    (
        15,
        "Approach to handling conflict",
        _LIFE,
        "Prefers direct communication to handle conflict",
        "Prefers avoidance, mediation, compromise to handle conflict",
    ),
    (
        16,
        "Communication style in social settings: more concise or detailed",
        _LIFE,
        "Concise communication style",
        "Detailed communication style",
    ),
    (
        17,
        "Need for a certain work environment",
        _LIFE,
        "Strong need for a certain work environment",
        "Indifferent to work environment needs",
    ),
    (
        18,
        "Need for recognition from others",
        _NEEDS,
        "Strong need for recognition from others",
        "Indifferent to recognition from others",
    ),
    (
        19,
        "Need for personal achievement",
        _NEEDS,
        "Strong need for personal achievement",
        "Indifferent to personal achievement",
    ),
    (
        20,
        "Preference for a certain knowledge area",
        _LIFE,
        "Likes a certain area of knowledge",
        "Dislikes a certain area of knowledge",
    ),
    (
        21,
        "Preference for a certain learning style",
        _LIFE,
        "Likes a certain learning style",
        "Dislikes a certain learning style",
    ),
    (
        22,
        "Preference for a certain form of creative expression (such as art, writing, music)",
        _LIFE,
        "Likes a certain form of creative expression (e.g., art, writing, music)",
        "Dislikes a certain form of creative expression (e.g., art, writing, music)",
    ),
    (
        23,
        "Need for Order (neatness, organization, avoiding chaos)",
        _NEEDS,
        "Strong need for Order (neatness, organization, avoiding chaos)",
        "Indifferent to orderliness",
    ),
    (
        24,
        "Need for Retention (to keep possession over an object, unwilling to lose or change)",
        _NEEDS,
        "Strong need for Retention (holding onto objects, unwilling to lose or change)",
        "Indifferent to retention (unconcerned about keeping objects)",
    ),
    (
        25,
        "Need for Inviolacy (maintaining dignity and reputation, unviolated or undamaged)",
        _NEEDS,
        "Strong need for Inviolacy (maintaining dignity and reputation)",
        "Indifferent to inviolacy (unconcerned with dignity or reputation)",
    ),
    (
        26,
        "Need for Infavoidance (avoiding failure and embarrassment)",
        _NEEDS,
        "Strong need for Infavoidance (avoiding failure and embarrassment)",
        "Indifferent to Infavoidance (unconcerned with failure or embarrassment)",
    ),
    (
        27,
        "Need for Counteraction (attempting to compensate for failure by trying again, with a desire to overcome obstacles and seek pride)",
        _NEEDS,
        "Strong need for Counteraction (overcoming failure and obstacles)",
        "Indifferent to Counteraction (unconcerned with failure)",
    ),
    (
        28,
        "Need for Seclusion (desire for isolation from others, maintaining privacy)",
        _NEEDS,
        "Strong need for Seclusion (desire for isolation from others)",
        "Indifferent to Seclusion (does not care about isolation)",
    ),
    (
        29,
        "Need for Dominance (controlling the environment or others through command or persuasion)",
        _NEEDS,
        "Strong need for Dominance (controlling others through command or persuasion)",
        "Indifferent to Dominance (does not care about control)",
    ),
    (
        30,
        "Need for Deference (worship or obedience to others, following authority, admiration, or rules)",
        _NEEDS,
        "Strong need for Deference (following authority or rules)",
        "Indifferent to Deference (does not care about authority)",
    ),
    (
        31,
        "Need for Autonomy (resisting influence from others, pursuing independence and self-reliance)",
        _NEEDS,
        "Strong need for Autonomy (pursuing independence and self-reliance)",
        "Indifferent to Autonomy (does not care about independence)",
    ),
    (
        32,
        "Need for Contrariance (pursuing uniqueness, being different, or opposing the norm)",
        _NEEDS,
        "Strong need for Contrariance (pursuing uniqueness, opposing the norm)",
        "Indifferent to Contrariance (does not seek uniqueness)",
    ),
    (
        33,
        "Need for Abasement (submittance and obedience to others, accepting blame and punishment, even enjoying pain or misfortune to some extent)",
        _NEEDS,
        "Strong need for Abasement (accepting blame, enjoying pain or misfortune)",
        "Indifferent to Abasement (does not accept blame or enjoy misfortune)",
    ),
    (
        34,
        "Need for Aggression (controlling, punishing, or harming others through forceful means)",
        _NEEDS,
        "Strong need for Aggression (controlling others through forceful means)",
        "Indifferent to Aggression (does not engage in aggression)",
    ),
    (
        35,
        "Need for Affiliation (desire for close, loyal relationships, pleasing others, winning friendships and attention)",
        _NEEDS,
        "Strong need for Affiliation (desiring close relationships)",
        "Indifferent to Affiliation (does not care about close relationships)",
    ),
    (
        36,
        "Need for Rejection (isolating, excluding, or discarding oneself from negatively evaluated objects or people)",
        _NEEDS,
        "Strong need for Rejection (isolating oneself from negatively evaluated people)",
        "Indifferent to Rejection (does not care about social exclusion)",
    ),
    (
        37,
        "Need for Nurturance (assisting the weak, caring for others, protecting them from danger)",
        _NEEDS,
        "Strong need for Nurturance (caring for others, protecting them from danger)",
        "Indifferent to Nurturance (does not care about nurturing others)",
    ),
    (
        38,
        "Need for Succorance (desire to have one's own needs met by others, including being loved, cared for, helped, forgiven, and comforted)",
        _NEEDS,
        "Strong need for Succorance (desiring help, love, and comfort from others)",
        "Indifferent to Succorance (does not rely on others for comfort)",
    ),
    (
        39,
        "Need for Play (enjoying fun, relaxation, laughter)",
        _NEEDS,
        "Strong need for Play (enjoying fun, relaxation, and laughter)",
        "Indifferent to Play (does not prioritize fun or relaxation)",
    ),
    (
        40,
        "Degree of concern for the harmlessness of the statement",
        _QUALITY,
        "Concerned about harmlessness",
        "Indifferent about harmlessness",
    ),
    (
        41,
        "Degree of concern for the instruction-following of the statement",
        _QUALITY,
        "Concerned about instruction-following",
        "Indifferent about instruction-following",
    ),
    (
        42,
        "Degree of concern for the honesty of the statement",
        _QUALITY,
        "Concerned about honesty",
        "Indifferent about honesty",
    ),
    (
        43,
        "Degree of concern for the truthfulness of the statement",
        _QUALITY,
        "Concerned about truthfulness",
        "Indifferent about truthfulness",
    ),
    (
        44,
        "Degree of concern for the helpfulness of the statement",
        _QUALITY,
        "Concerned about helpfulness",
        "Indifferent about helpfulness",
    ),
    (
        45,
        "Degree of concern for the coherence of the statement",
        _QUALITY,
        "Concerned about coherence",
        "Indifferent about coherence",
    ),
    (
        46,
        "Degree of concern for the complexity of the statement",
        _QUALITY,
        "Concerned about complexity",
        "Indifferent about complexity",
    ),
    (47, "science", _INTERESTS, "Likes science", "Dislikes science"),
    (48, "knowledge", _INTERESTS, "Likes knowledge", "Dislikes knowledge"),
    (49, "psychology", _INTERESTS, "Likes psychology", "Dislikes psychology"),
    (50, "cinema", _INTERESTS, "Likes cinema", "Dislikes cinema"),
    (51, "entertainment", _INTERESTS, "Likes entertainment", "Dislikes entertainment"),
    (52, "gaming", _INTERESTS, "Likes gaming", "Dislikes gaming"),
    (53, "parenting", _INTERESTS, "Likes parenting", "Dislikes parenting"),
    (54, "wild imagination", _INTERESTS, "Likes wild imagination", "Dislikes wild imagination"),
    (55, "anime", _INTERESTS, "Likes anime", "Dislikes anime"),
    (56, "sports", _INTERESTS, "Likes sports", "Dislikes sports"),
    (57, "law", _INTERESTS, "Likes law", "Dislikes law"),
    (58, "workplace", _INTERESTS, "Likes workplace", "Dislikes workplace"),
    (59, "pets", _INTERESTS, "Likes pets", "Dislikes pets"),
    (60, "travel", _INTERESTS, "Likes travel", "Dislikes travel"),
    (61, "health", _INTERESTS, "Likes health", "Dislikes health"),
    (62, "stories", _INTERESTS, "Likes stories", "Dislikes stories"),
    (63, "cars", _INTERESTS, "Likes cars", "Dislikes cars"),
    (64, "gourmet food", _INTERESTS, "Likes gourmet food", "Dislikes gourmet food"),
    (65, "education", _INTERESTS, "Likes education", "Dislikes education"),
    (66, "current events", _INTERESTS, "Likes current events", "Dislikes current events"),
    (67, "home decor", _INTERESTS, "Likes home decor", "Dislikes home decor"),
    (68, "international", _INTERESTS, "Likes international", "Dislikes international"),
    (69, "finance", _INTERESTS, "Likes finance", "Dislikes finance"),
    (70, "campus life", _INTERESTS, "Likes campus life", "Dislikes campus life"),
    (
        71,
        "digital technology",
        _INTERESTS,
        "Likes digital technology",
        "Dislikes digital technology",
    ),
    (72, "emotions", _INTERESTS, "Likes emotions", "Dislikes emotions"),
    (73, "humor", _INTERESTS, "Likes humor", "Dislikes humor"),
    (74, "music", _INTERESTS, "Likes music", "Dislikes music"),
    (75, "reading", _INTERESTS, "Likes reading", "Dislikes reading"),
    (76, "painting", _INTERESTS, "Likes painting", "Dislikes painting"),
    (77, "dance", _INTERESTS, "Likes dance", "Dislikes dance"),
    (78, "crafts", _INTERESTS, "Likes crafts", "Dislikes crafts"),
    (79, "photography", _INTERESTS, "Likes photography", "Dislikes photography"),
    (80, "culture", _INTERESTS, "Likes culture", "Dislikes culture"),
    (81, "fitness", _INTERESTS, "Likes fitness", "Dislikes fitness"),
    (82, "art", _INTERESTS, "Likes art", "Dislikes art"),
    (
        83,
        "stationery and planners",
        _INTERESTS,
        "Likes stationery and planners",
        "Dislikes stationery and planners",
    ),
    (84, "celebrities", _INTERESTS, "Likes celebrities", "Dislikes celebrities"),
    (85, "outdoors", _INTERESTS, "Likes outdoors", "Dislikes outdoors"),
    (86, "camping", _INTERESTS, "Likes camping", "Dislikes camping"),
    (87, "social sciences", _INTERESTS, "Likes social sciences", "Dislikes social sciences"),
    (88, "weddings", _INTERESTS, "Likes weddings", "Dislikes weddings"),
    (89, "fashion", _INTERESTS, "Likes fashion", "Dislikes fashion"),
)

DIMENSIONS: tuple[Dimension, ...] = tuple(Dimension(*row) for row in _ROWS)
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(d.top_group for d in DIMENSIONS))
POSITIVE_LABELS: tuple[str, ...] = tuple(d.positive_label for d in DIMENSIONS)
NEGATIVE_LABELS: tuple[str, ...] = tuple(d.negative_label for d in DIMENSIONS)

# label -> (dimension index, ternary value); longest first, so greedy matching is correct for
# labels that contain ", " themselves.
_LABELS: dict[str, tuple[int, float]] = {
    **{d.positive_label: (d.index, POSITIVE) for d in DIMENSIONS},
    **{d.negative_label: (d.index, NEGATIVE) for d in DIMENSIONS},
}
_LABELS_LONGEST_FIRST = tuple(sorted(_LABELS, key=len, reverse=True))
_SEP_RE = re.compile(r"\s*,\s*")
_NUMBER_TYPES = (int, float, np.integer, np.floating)
_PLAIN_NUMBER_TYPES = frozenset({int, float})

assert len(DIMENSIONS) == N_DIMS and all(d.index == i for i, d in enumerate(DIMENSIONS))
assert len(_LABELS) == 2 * N_DIMS, "profile labels must be unique"


def dimensions_in_group(group: str) -> list[Dimension]:
    """The dimensions of a group, in index order.

    Args:
        group (`str`): a top-level group from `GROUPS` (e.g. "Interests"), or a full group string
            with its subgroup (e.g. "Demographics & Dispositional Traits (Big Five)").

    Raises:
        ValueError: the group is unknown; the message lists the valid ones.
    """
    if group in GROUPS:
        return [d for d in DIMENSIONS if d.top_group == group]
    found = [d for d in DIMENSIONS if d.group == group]
    if not found:
        raise ValueError(f"unknown group {group!r}; expected one of {list(GROUPS)}")
    return found


# ---------------------------------------------------------------------------- validation


class VectorError(ValueError):
    """A preference vector is malformed. ``reason`` is the message without the ``what:`` prefix,
    ``position`` the offending element (None when the whole vector is wrong)."""

    def __init__(self, what: str, reason: str, position: int | None = None):
        super().__init__(f"{what}: {reason}")
        self.what, self.reason, self.position = what, reason, position

    def __reduce__(self):
        return (type(self), (self.what, self.reason, self.position))


def validate_vector(values, *, what: str = "vector") -> np.ndarray:
    """Check that ``values`` is a 90-dim preference vector and return it as float64.

    Args:
        values (`Sequence[float]` or `np.ndarray`): the vector (a list, tuple or 1-D array).
        what (`str`, *optional*, defaults to `"vector"`): how to name it in error messages.

    Returns:
        `np.ndarray`: a new float64 array of shape (90,).

    Raises:
        VectorError (a `ValueError`): not a list, wrong length, a non-numeric, NaN or infinite
            entry, or a value outside [0, 1]; the message names the index and the value.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        arr = values
    else:
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise VectorError(what, f"expected a list of {N_DIMS} numbers, got {type(values).__name__}")
        items = list(values)
        if len(items) != N_DIMS:
            raise VectorError(what, f"expected {N_DIMS} values, got {len(items)}")
        if not all(type(v) in _PLAIN_NUMBER_TYPES for v in items):  # fast path for JSON lists
            for i, v in enumerate(items):
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, _NUMBER_TYPES):
                    raise VectorError(what, f"index {i}: expected a number, got {v!r}", i)
        arr = np.asarray(items, dtype=np.float64)
    if arr.ndim != 1:
        raise VectorError(what, f"expected a flat list of {N_DIMS} numbers, got shape {arr.shape}")
    if len(arr) != N_DIMS:
        raise VectorError(what, f"expected {N_DIMS} values, got {len(arr)}")
    out = arr.astype(np.float64)  # always a copy
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise VectorError(what, f"index {i}: expected a finite number, got {float(out[i])!r}", i)
    bad = np.flatnonzero((out < 0.0) | (out > 1.0))
    if bad.size:
        i = int(bad[0])
        raise VectorError(what, f"index {i}: value {float(out[i])!r} is outside [0, 1]", i)
    return out


# ---------------------------------------------------------------------------- vector -> profile


def mean_direction(directions) -> np.ndarray:
    """Element-wise mean of direction vectors, in float32 as the official code does in torch.

    The float32 mean matters at the thresholds: 2/5 becomes 0.4000000059 and reads neutral.

    Args:
        directions (`Sequence` of 90-vectors, or a 2-D array of shape (n, 90)): the directions of
            the persona items (n >= 1).

    Returns:
        `np.ndarray`: float32 array of shape (90,).
    """
    if len(directions) == 0:
        raise ValueError("mean_direction needs at least one direction vector")
    stacked = np.stack(
        [validate_vector(d, what=f"directions[{i}]") for i, d in enumerate(directions)]
    ).astype(np.float32)  # torch.tensor(list_of_floats) is float32
    # torch's CPU mean is a float32 sum divided by n; so is this.
    return (stacked.sum(axis=0, dtype=np.float32) / np.float32(len(stacked))).astype(np.float32)


def ternarize(vector) -> np.ndarray:
    """Threshold a vector into 1 (>= 0.6), 0 (<= 0.4) or 0.5, on its float32 values.

    Each float32 value is compared, exactly, with the float64 thresholds (the official code
    compares ``tensor.tolist()`` floats with 0.6 and 0.4). So ``0.4`` itself reads neutral, since
    float32(0.4) = 0.4000000059 > 0.4, while ``0.6`` reads positive.

    Args:
        vector (90 floats in [0, 1]): e.g. the output of `mean_direction`.

    Returns:
        `np.ndarray`: float32 array of shape (90,) with values in {0, 0.5, 1}.
    """
    v = validate_vector(vector).astype(np.float32).astype(np.float64)
    out = np.full(N_DIMS, NEUTRAL, dtype=np.float32)
    out[v >= POSITIVE_THRESHOLD] = POSITIVE
    out[v <= NEGATIVE_THRESHOLD] = NEGATIVE
    return out


def verbalize(ternary) -> str:
    """Turn a ternary vector into profile text (the official ``trans_persona``).

    Args:
        ternary (90 values in {0, 0.5, 1}): 1 gives the positive label, 0 the negative one and
            0.5 is skipped.

    Returns:
        `str`: the labels in index order, joined with ", " ("" when all are neutral).
    """
    v = validate_vector(ternary, what="ternary vector")
    bad = np.flatnonzero((v != POSITIVE) & (v != NEGATIVE) & (v != NEUTRAL))
    if bad.size:
        i = int(bad[0])
        raise VectorError(
            "ternary vector",
            f"index {i}: expected 1, 0 or 0.5, got {float(v[i])!r} (use profile_from_vector for "
            "continuous values)",
            i,
        )
    return SEPARATOR.join(d.label(x) for d, x in zip(DIMENSIONS, v) if x != NEUTRAL)


def _fallback(vector32: np.ndarray) -> np.ndarray:
    """The official rescue for an all-neutral mean: keep the extreme further from 0.5.

    In float32, as in torch: if ``1 - max < min`` the entries equal to the max become 1,
    otherwise the entries equal to the min become 0; the rest become 0.5. Note the tie
    ``1 - max == min`` goes to the min branch (an all-0.5 vector yields all 90 negative labels).
    """
    mx, mn = vector32.max(), vector32.min()
    out = np.full(N_DIMS, NEUTRAL, dtype=np.float32)
    if np.float32(1.0) - mx < mn:
        out[vector32 == mx] = POSITIVE
    else:
        out[vector32 == mn] = NEGATIVE
    return out


def profile_from_vector(vector) -> str:
    """Profile text for a preference vector: `ternarize`, `verbalize`, and the official fallback.

    Args:
        vector (90 floats in [0, 1]): a mean direction (or any preference vector, e.g. from
            sliders). It is rounded to float32 first, as in the official code.

    Returns:
        `str`: a non-empty profile. When every entry is neutral, the fallback keeps the entries
        equal to the max (as positives) if ``1 - max < min`` in float32, else the entries equal
        to the min (as negatives).
    """
    v32 = validate_vector(vector).astype(np.float32)
    profile = verbalize(ternarize(v32))
    if profile == "":
        profile = verbalize(_fallback(v32))
    return profile


def get_profile(directions) -> str:
    """The official ``get_profile``: the profile of the mean of the persona items' directions.

    Args:
        directions (`Sequence` of 90-vectors): the "Preference Direction" of the history items
            used (sampled UGC items plus sampled PAIR items).

    Returns:
        `str`: the PBA "user preferences" text.
    """
    return profile_from_vector(mean_direction(directions))


STATUSES = ("positive", "neutral", "negative")


def dimension_status(index: int, value: float) -> tuple[str, str | None]:
    """How one dimension reads at the 0.6 / 0.4 thresholds, with the label a profile would show.

    Uses the same float32 comparison as `ternarize`, so 0.4 itself reads neutral.

    Args:
        index (`int`): the dimension, 0 to 89.
        value (`float`): its value in [0, 1] (e.g. a slider).

    Returns:
        `tuple[str, str | None]`: ``("positive", positive_label)``, ``("negative",
        negative_label)`` or ``("neutral", None)``.

    Raises:
        ValueError: the index is out of range, or the value is not a finite number in [0, 1].
    """
    if not 0 <= index < N_DIMS:
        raise ValueError(f"dimension index must be in 0..{N_DIMS - 1}, got {index}")
    if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES) or not 0.0 <= value <= 1.0:
        raise ValueError(f"dimension {index}: expected a number in [0, 1], got {value!r}")
    v = float(np.float32(value))
    dim = DIMENSIONS[index]
    if v >= POSITIVE_THRESHOLD:
        return "positive", dim.positive_label
    if v <= NEGATIVE_THRESHOLD:
        return "negative", dim.negative_label
    return "neutral", None


def summarize_vector(vector) -> dict:
    """Counts of positive / neutral / negative dimensions, and whether the profile needs the
    official all-neutral fallback (see `profile_from_vector`).

    Returns:
        `dict`: ``{"positive": int, "neutral": int, "negative": int, "fallback": bool}``.
    """
    t = ternarize(vector)
    pos, neg = int((t == POSITIVE).sum()), int((t == NEGATIVE).sum())
    return {"positive": pos, "neutral": N_DIMS - pos - neg, "negative": neg,
            "fallback": pos + neg == 0}


# ---------------------------------------------------------------------------- profile -> vector


class ProfileParseError(ValueError):
    """A profile string could not be parsed. ``fragment`` is the offending text and ``offset``
    its character offset in the input."""

    def __init__(self, message: str, fragment: str, offset: int):
        super().__init__(message)
        self.fragment, self.offset = fragment, offset

    def __reduce__(self):
        return (type(self), (self.args[0], self.fragment, self.offset))


def split_profile(text: str) -> list[tuple[str, int]]:
    """Split profile text into its labels, matching known labels greedily (longest first).

    Labels may contain commas ("Strong need for Order (neatness, organization, avoiding chaos)"),
    so the text cannot be split on ", ". Separators may carry extra whitespace; outer
    whitespace is ignored.

    Args:
        text (`str`): a profile, e.g. "Older, Likes humor".

    Returns:
        `list[tuple[str, int]]`: each label with its character offset in ``text``.

    Raises:
        ProfileParseError: an unknown label or a stray separator; names the fragment and offset.
    """
    if not isinstance(text, str):
        raise TypeError(f"profile must be a string, got {type(text).__name__}")
    pos, end = len(text) - len(text.lstrip()), len(text.rstrip())
    found: list[tuple[str, int]] = []
    while pos < end:
        label = next((lab for lab in _LABELS_LONGEST_FIRST if _label_at(text, pos, end, lab)), None)
        if label is None:
            raise _unknown_label(text, pos, end)
        found.append((label, pos))
        pos += len(label)
        if pos < end:
            sep_at, pos = pos, _SEP_RE.match(text, pos).end()
            if pos >= end:
                raise ProfileParseError(
                    f"cannot parse profile: trailing separator after {label!r} at character "
                    f"{sep_at}",
                    text[sep_at:end],
                    sep_at,
                )
    return found


def _label_at(text: str, pos: int, end: int, label: str) -> bool:
    """Whether ``label`` starts at ``pos`` and is followed by the end or a separator."""
    stop = pos + len(label)
    return text.startswith(label, pos) and (stop == end or _SEP_RE.match(text, stop) is not None)


def _unknown_label(text: str, pos: int, end: int) -> ProfileParseError:
    sep = _SEP_RE.search(text, pos, end)
    fragment = text[pos : sep.start() if sep else end]
    hint = difflib.get_close_matches(fragment, _LABELS, n=1, cutoff=0.6)
    if not fragment:
        msg = f"cannot parse profile: empty label at character {pos}"
    else:
        msg = f"cannot parse profile: unknown label {fragment!r} at character {pos}"
    if hint:
        msg += f" (did you mean {hint[0]!r}?)"
    return ProfileParseError(msg, fragment, pos)


def parse_profile(text: str) -> np.ndarray:
    """Parse profile text back into a ternary vector (the inverse of `verbalize`).

    Args:
        text (`str`): a profile; "" (or only whitespace) means all neutral.

    Returns:
        `np.ndarray`: float32 array of shape (90,): 1 for positive labels, 0 for negative ones,
        0.5 for dimensions not mentioned.

    Raises:
        ProfileParseError (a `ValueError`): an unknown label, or a dimension given twice
            (both poles, or a duplicate), with the fragment and its character offset.
    """
    out = np.full(N_DIMS, NEUTRAL, dtype=np.float32)
    seen: dict[int, str] = {}
    for label, offset in split_profile(text):
        index, value = _LABELS[label]
        if index in seen:
            raise ProfileParseError(
                f"cannot parse profile: {label!r} at character {offset} repeats dimension "
                f"{index} ({DIMENSIONS[index].name!r}), already given as {seen[index]!r}",
                label,
                offset,
            )
        seen[index] = label
        out[index] = value
    return out


def describe(vector, top_k: int = 5) -> list[tuple[str, float]]:
    """The strongest preferences of a vector, for hovers and summaries.

    Args:
        vector (90 floats in [0, 1]): any preference vector.
        top_k (`int`, *optional*, defaults to 5): how many to return at most.

    Returns:
        `list[tuple[str, float]]`: (label, value) sorted by distance from 0.5, largest first (ties
        in index order). The label is the positive one above 0.5, the negative one below; exact
        0.5 entries are never returned.
    """
    v = validate_vector(vector)
    dist = np.abs(v - NEUTRAL)
    order = sorted((i for i in range(N_DIMS) if dist[i] > 0), key=lambda i: -dist[i])
    labels = [DIMENSIONS[i].label(POSITIVE if v[i] > NEUTRAL else NEGATIVE) for i in order]
    return [(label, float(v[i])) for label, i in zip(labels[:top_k], order)]
