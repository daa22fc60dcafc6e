"""SIM's pre-training objectives, registered in :data:`OBJECTIVES` (one place, below).

Each objective takes the model, a batch of training items and a seeded ``numpy`` generator and
returns its loss and a metric:

* ``match``: every image against its own MIDI (positive) and against a negative: with probability
  ``hard_share`` a *hard* one (another excerpt of the same piece, else the same music shifted by
  one bar), otherwise music of another piece. Binary cross-entropy on the match head.
* ``masked_bars``: a share of each item's bars (at least one) is masked in its MIDI, one mask row
  per bar, and the model predicts each masked bar's pitch set and onset bins from the image and
  the rest (binary cross-entropy per pitch and per bin).
* ``contrastive``: image and MIDI encoded apart (two towers sharing the encoder, each with its
  projection head), symmetric InfoNCE over the batch at a learned temperature.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from umt.models.sim import ScoreMidiModel
from umt.sim.bars import MidiIds, bar_attributes, mask_bars, seconds_to_bar_ticks
from umt.sim.items import SimItem
from umt.tokenizers.midi import Note
from umt.utils.registry import Registry
from umt.vocab import PAD_ID, Vocabulary


def pad_grids(grids: Sequence[np.ndarray]) -> Tensor:
    """Code grids ``[H, W, K]`` -> ``[B, H_max, W_max, K]``, PAD-padded below and to the right."""
    height, width = max(g.shape[0] for g in grids), max(g.shape[1] for g in grids)
    out = np.full((len(grids), height, width, grids[0].shape[2]), PAD_ID, dtype=np.int64)
    for index, grid in enumerate(grids):
        out[index, : grid.shape[0], : grid.shape[1]] = grid
    return torch.from_numpy(out)


def pad_ids(rows: Sequence[Sequence[int]]) -> Tensor:
    """Id lists -> ``[B, L_max]``, PAD-padded on the right."""
    out = np.full((len(rows), max(1, max(len(r) for r in rows))), PAD_ID, dtype=np.int64)
    for index, ids in enumerate(rows):
        out[index, : len(ids)] = ids
    return torch.from_numpy(out)


class PairSource:
    """Training items with their MIDI ids, bars in ticks and pieces, for drawing negatives."""

    def __init__(self, items: Sequence[SimItem], vocab: Vocabulary, hard_share: float = 0.5) -> None:
        self.items = list(items)
        self.vocab = vocab
        self.midi = MidiIds.of(vocab)
        self.hard_share = hard_share
        self.ids = [item.midi_ids(vocab) for item in self.items]
        self.bar_ticks = [seconds_to_bar_ticks(item.bars) for item in self.items]
        self.by_piece: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(self.items):
            self.by_piece[item.piece].append(index)

    def length(self, index: int) -> int:
        """Image code cells plus MIDI rows of item ``index`` (for batching alike lengths)."""
        grid = self.items[index].grid
        return int((grid[..., 0] != PAD_ID).sum()) + len(self.ids[index])

    def negative(self, index: int, rng: np.random.Generator) -> list[int]:
        """MIDI ids that do not belong with item ``index``'s image (see the module docstring)."""
        own = self.ids[index]
        if rng.random() < self.hard_share:
            same_piece = [j for j in self.by_piece[self.items[index].piece] if self.ids[j] != own]
            if same_piece:
                return self.ids[same_piece[rng.integers(len(same_piece))]]
            shifted = self.shifted_by_a_bar(index)
            if shifted is not None and shifted != own:
                return shifted
        others = [j for j in range(len(self.items)) if self.items[j].piece != self.items[index].piece]
        others = others or [j for j in range(len(self.items)) if self.ids[j] != own] or [index]
        return self.ids[others[rng.integers(len(others))]]

    def shifted_by_a_bar(self, index: int) -> list[int] | None:
        """The item's music from its second bar on, moved to start at 0 (None: under two bars)."""
        item = self.items[index]
        if len(item.bars) < 3:
            return None
        start = float(item.bars[1])
        notes = [
            Note(n.pitch, n.program, n.is_drum, n.onset - start, n.offset - start)
            for n in item.note_list()
            if n.onset >= start - 1e-9
        ]
        return item.midi_ids(self.vocab, notes) if notes else None


@dataclass(frozen=True)
class Objective:
    name: str
    loss: Callable[
        [ScoreMidiModel, PairSource, Sequence[int], np.random.Generator, dict], tuple[Tensor, float]
    ]
    description: str


def match_loss(model, source: PairSource, batch: Sequence[int], rng, options: dict) -> tuple[Tensor, float]:
    grids = [source.items[i].grid for i in batch]
    midi = [source.ids[i] for i in batch] + [source.negative(i, rng) for i in batch]
    logits = model.match_logits(pad_grids(grids + grids), pad_ids(midi))
    labels = torch.cat([torch.ones(len(batch)), torch.zeros(len(batch))])
    accuracy = float(((logits > 0).float() == labels).float().mean())
    return F.binary_cross_entropy_with_logits(logits, labels), accuracy


def masked_bar_inputs(
    source: PairSource, batch: Sequence[int], rng: np.random.Generator, share: float, mask_id: int, bins: int
) -> tuple[list[int], list[list[int]], np.ndarray, np.ndarray]:
    """The items of ``batch`` with bars, their MIDI with bars masked, and the masked bars' pitch
    sets ``bool [N, 128]`` and onset bins ``bool [N, bins]`` in the order of the mask rows."""
    kept, masked, pitches, onsets = [], [], [], []
    for i in batch:
        ticks = source.bar_ticks[i]
        count = len(ticks) - 1
        if count < 1:
            continue
        chosen = np.flatnonzero(rng.random(count) < share)
        chosen = chosen if len(chosen) else np.array([rng.integers(count)])
        bar_pitches, bar_onsets = bar_attributes(source.ids[i], ticks, source.midi, bins)
        kept.append(i)
        masked.append(mask_bars(source.ids[i], ticks, chosen, source.midi, mask_id))
        pitches.append(bar_pitches[chosen])
        onsets.append(bar_onsets[chosen])
    if not kept:
        return [], [], np.zeros((0, 128), bool), np.zeros((0, bins), bool)
    return kept, masked, np.concatenate(pitches), np.concatenate(onsets)


def masked_bars_loss(
    model, source: PairSource, batch: Sequence[int], rng, options: dict
) -> tuple[Tensor, float]:
    bins = model.config.onset_bins
    kept, masked, pitches, onsets = masked_bar_inputs(
        source, batch, rng, options.get("mask_share", 0.3), model.mask_id, bins
    )
    if not kept:
        return model.match_head.weight.sum() * 0.0, float("nan")
    pitch_logits, onset_logits = model.bar_logits(
        pad_grids([source.items[i].grid for i in kept]), pad_ids(masked)
    )
    pitch_target, onset_target = torch.from_numpy(pitches).float(), torch.from_numpy(onsets).float()
    loss = F.binary_cross_entropy_with_logits(
        pitch_logits, pitch_target
    ) + F.binary_cross_entropy_with_logits(onset_logits, onset_target)
    exact = float(((pitch_logits > 0) == pitch_target.bool()).all(dim=1).float().mean())
    return loss, exact


def contrastive_loss(
    model, source: PairSource, batch: Sequence[int], rng, options: dict
) -> tuple[Tensor, float]:
    images = model.image_embedding(pad_grids([source.items[i].grid for i in batch]))
    music = model.midi_embedding(pad_ids([source.ids[i] for i in batch]))
    logits = images @ music.T * model.contrastive_scale()
    labels = torch.arange(len(batch))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return loss, float((logits.argmax(dim=1) == labels).float().mean())


OBJECTIVES: Registry[Objective] = Registry("SIM objective")
for _objective in (
    Objective("match", match_loss, "score-MIDI matching with hard negatives"),
    Objective("masked_bars", masked_bars_loss, "masked bar-attribute modelling (pitch sets, onsets)"),
    Objective("contrastive", contrastive_loss, "two towers, symmetric InfoNCE"),
):
    OBJECTIVES.add(_objective.name, _objective)
