"""Symbol error rate (SER) over LMX token sequences, as the OLiMPiC / Zeus evaluation computes it.

For a corpus of (gold, predicted) pairs, each a whitespace-separated LMX string (or a token list):

    SER = 100 * sum(levenshtein(gold_i, pred_i)) / sum(len(gold_i))

over whitespace tokens, nothing dropped (unknown tokens count like any other). ``SERnotuplets`` is
the same after removing ``tuplet:start``, ``tuplet:stop`` and every ``NinM`` time-modification
token (any token matching ``^\\d+in\\d+$``, like the reference's ``zeus/ser_metric.py``), from both
sides. The Levenshtein distance has unit costs for insertion, deletion and substitution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from umt.tokenizers.lmx_vocabulary import TUPLET_TOKENS

_TIME_MODIFICATION = re.compile(r"^\d+in\d+$")


def _tokens(sequence: str | Sequence[str]) -> list[str]:
    return sequence.split() if isinstance(sequence, str) else list(sequence)


def is_tuplet_token(token: str) -> bool:
    """``tuplet:start``, ``tuplet:stop`` or a ``NinM`` time-modification token (in the vocabulary or not)."""
    return token in TUPLET_TOKENS or _TIME_MODIFICATION.match(token) is not None


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Token-level edit distance (unit costs), row by row with numpy: O(len(a) * len(b)) time.

    The inner recurrence ``row[j] = min(row[j-1] + 1, candidate[j])`` is a running minimum of
    ``candidate[j] - j`` plus ``j``, so each row is three vectorized steps.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    # map tokens to integers so that comparisons are vectorized
    ids: dict[str, int] = {}
    a_ids = np.fromiter((ids.setdefault(t, len(ids)) for t in a), dtype=np.int64, count=len(a))
    b_ids = np.fromiter((ids.setdefault(t, len(ids)) for t in b), dtype=np.int64, count=len(b))
    columns = np.arange(len(b) + 1, dtype=np.int64)
    row = columns.copy()
    candidate = np.empty(len(b) + 1, dtype=np.int64)
    for i, token in enumerate(a_ids, start=1):
        # deletion (row above + 1) or substitution / match (diagonal + cost)
        candidate[0] = i
        np.minimum(row[1:] + 1, row[:-1] + (b_ids != token), out=candidate[1:])
        # insertion: row[j] = min over k <= j of candidate[k] + (j - k)
        row = np.minimum.accumulate(candidate - columns) + columns
    return int(row[-1])


@dataclass(frozen=True)
class SymbolErrorRate:
    """Corpus-level symbol error rates in percent, with the raw counts behind them."""

    ser: float
    ser_no_tuplets: float
    errors: int
    gold_tokens: int
    errors_no_tuplets: int
    gold_tokens_no_tuplets: int

    def as_dict(self) -> dict[str, float]:
        """The reference's names: ``{"SER": ..., "SERnotuplets": ...}``."""
        return {"SER": self.ser, "SERnotuplets": self.ser_no_tuplets}


def symbol_error_rate(
    gold: Iterable[str | Sequence[str]], predicted: Iterable[str | Sequence[str]]
) -> SymbolErrorRate:
    """SER and SER without tuplet tokens over a corpus (see the module docstring).

    Raises ``ValueError`` when the two corpora differ in length or the gold corpus has no tokens.
    A gold corpus that has tokens but none left after removing tuplet tokens gives
    ``ser_no_tuplets = nan`` (the reference would divide by zero).
    """
    gold, predicted = list(gold), list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"gold and predicted corpora differ in length ({len(gold)} != {len(predicted)})")
    errors = total = errors_nt = total_nt = 0
    for gold_sequence, predicted_sequence in zip(gold, predicted):
        gold_tokens, predicted_tokens = _tokens(gold_sequence), _tokens(predicted_sequence)
        errors += levenshtein(gold_tokens, predicted_tokens)
        total += len(gold_tokens)
        gold_nt = [t for t in gold_tokens if not is_tuplet_token(t)]
        predicted_nt = [t for t in predicted_tokens if not is_tuplet_token(t)]
        errors_nt += levenshtein(gold_nt, predicted_nt)
        total_nt += len(gold_nt)
    if total == 0:
        raise ValueError("the gold corpus has no tokens")
    return SymbolErrorRate(
        ser=100.0 * errors / total,
        ser_no_tuplets=100.0 * errors_nt / total_nt if total_nt else float("nan"),
        errors=errors,
        gold_tokens=total,
        errors_no_tuplets=errors_nt,
        gold_tokens_no_tuplets=total_nt,
    )
