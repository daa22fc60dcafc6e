"""Symbol error rate, on hand-computed cases, against the reference definition (zeus/ser_metric.py)."""

from __future__ import annotations

import math
import random

import pytest

from umt.metrics.ser import is_tuplet_token, levenshtein, symbol_error_rate


def _levenshtein_plain(a: list[str], b: list[str]) -> int:
    """The textbook dynamic programme, as a cross-check."""
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = min(current[j - 1] + 1, previous[j] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
        previous = current
    return previous[-1]


def test_levenshtein_hand_computed() -> None:
    assert levenshtein([], []) == 0
    assert levenshtein(["a"], []) == 1
    assert levenshtein([], ["a", "b"]) == 2
    assert levenshtein(["kitten"], ["sitting"]) == 1  # one token each, different
    assert levenshtein(list("kitten"), list("sitting")) == 3
    assert levenshtein(["C4", "quarter", "D4", "half"], ["C4", "half", "D4", "half", "dot"]) == 2


def test_levenshtein_matches_plain_dynamic_programme_on_random_sequences() -> None:
    rng = random.Random(7)
    for _ in range(200):
        a = [rng.choice("abcd") for _ in range(rng.randrange(30))]
        b = [rng.choice("abcd") for _ in range(rng.randrange(30))]
        assert levenshtein(a, b) == _levenshtein_plain(a, b)


def test_ser_is_corpus_level_sum_of_distances_over_sum_of_gold_lengths() -> None:
    gold = ["measure C4 quarter D4 quarter", "measure rest whole"]
    predicted = ["measure C4 quarter E4 quarter", "measure rest"]  # 1 substitution, 1 deletion
    result = symbol_error_rate(gold, predicted)
    assert (result.errors, result.gold_tokens) == (2, 8)
    assert result.ser == pytest.approx(25.0)
    # not the mean of per-line rates (20% and 33.3%)
    assert result.as_dict()["SER"] == pytest.approx(25.0)


def test_ser_without_tuplets_removes_tuplet_and_time_modification_tokens() -> None:
    gold = ["measure C4 eighth 3in2 tuplet:start D4 eighth 3in2 E4 eighth 3in2 tuplet:stop"]
    predicted = [
        "measure C4 eighth D4 eighth E4 eighth 5in4"
    ]  # all errors are tuplet tokens (+ an unknown NinM)
    result = symbol_error_rate(gold, predicted)
    # the four tuplet tokens before the last are deleted, 'tuplet:stop' is substituted by '5in4'
    assert result.gold_tokens == 12 and result.errors == 5
    assert result.ser == pytest.approx(100 * 5 / 12)
    assert (result.errors_no_tuplets, result.gold_tokens_no_tuplets) == (0, 7)
    assert result.ser_no_tuplets == 0.0


def test_token_lists_and_whitespace() -> None:
    result = symbol_error_rate([["a", "b", "c"]], ["a  b\tc\n"])
    assert result.ser == 0.0
    # unknown tokens are not dropped: they count as errors
    assert symbol_error_rate(["a b"], ["a junk b"]).errors == 1


def test_is_tuplet_token() -> None:
    assert is_tuplet_token("tuplet:start") and is_tuplet_token("3in2") and is_tuplet_token("99in7")
    assert not is_tuplet_token("quarter") and not is_tuplet_token("in2")


def test_errors() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        symbol_error_rate(["a"], [])
    with pytest.raises(ValueError, match="no tokens"):
        symbol_error_rate([""], ["a"])
    assert math.isnan(symbol_error_rate(["3in2"], ["3in2"]).ser_no_tuplets)
