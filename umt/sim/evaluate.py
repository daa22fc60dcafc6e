"""SIM's evaluation: retrieval both ways, masked-bar accuracy, and the downstream probe.

* Retrieval over a test split: every image against every MIDI, scored by the match head (a
  cross-encoder: one encoder pass per pair) or, when the model was trained with the contrastive
  objective, by the cosine of the two towers' embeddings. Recall@1/5/10 and MRR image -> MIDI and
  MIDI -> image (:mod:`umt.metrics.retrieval`), beside chance.
* Masked bars: each bar of each item masked on its own; a bar's pitch set (or onset set) counts as
  right when every pitch (bin) is right; F1 over all (bar, pitch) and (bar, bin) decisions too.
* Probe: composer (or any label) from the pair's pooled encoder state by a linear probe, pieces
  held out together; the same probe on a model of the same size and seed that was never
  pre-trained, and the majority class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from umt.metrics.retrieval import chance_metrics, retrieval_metrics
from umt.models.sim import ScoreMidiModel
from umt.sim.bars import MidiIds, bar_attributes, mask_bars, seconds_to_bar_ticks
from umt.sim.items import SimItem
from umt.sim.objectives import pad_grids, pad_ids

SCORERS = ("match", "contrastive")


@torch.no_grad()
def score_matrix(
    model: ScoreMidiModel,
    grids: Sequence[np.ndarray],
    midi: Sequence[list[int]],
    scorer: str,
    batch: int = 64,
) -> np.ndarray:
    """Scores ``[I, M]`` of image ``i`` with MIDI ``j`` (``scorer``: ``match`` or ``contrastive``)."""
    model.eval()
    if scorer == "contrastive":
        images = torch.cat(
            [model.image_embedding(pad_grids(grids[s : s + batch])) for s in range(0, len(grids), batch)]
        )
        music = torch.cat(
            [model.midi_embedding(pad_ids(midi[s : s + batch])) for s in range(0, len(midi), batch)]
        )
        return (images @ music.T).numpy()
    if scorer != "match":
        raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
    pairs = [(i, j) for i in range(len(grids)) for j in range(len(midi))]
    scores = np.zeros((len(grids), len(midi)))
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        logits = model.match_logits(
            pad_grids([grids[i] for i, _ in chunk]), pad_ids([midi[j] for _, j in chunk])
        )
        for (i, j), value in zip(chunk, logits.tolist()):
            scores[i, j] = value
    return scores


def retrieval(
    model: ScoreMidiModel, items: Sequence[SimItem], scorer: str = "match"
) -> dict[str, dict[str, float]]:
    """Image -> MIDI and MIDI -> image figures over ``items`` (each item's own pair is the answer)."""
    vocab = model.vocab
    scores = score_matrix(
        model, [item.grid for item in items], [item.midi_ids(vocab) for item in items], scorer
    )
    return {
        "image_to_midi": retrieval_metrics(scores),
        "midi_to_image": retrieval_metrics(scores.T),
        "chance": chance_metrics(len(items)),
    }


@torch.no_grad()
def masked_bar_accuracy(model: ScoreMidiModel, items: Sequence[SimItem], batch: int = 32) -> dict[str, float]:
    """Every bar of every item masked alone; exact-set accuracy and F1 of pitches and onsets."""
    model.eval()
    vocab, bins = model.vocab, model.config.onset_bins
    midi = MidiIds.of(vocab)
    inputs, truth_pitch, truth_onset = [], [], []
    for item in items:
        ids, ticks = item.midi_ids(vocab), seconds_to_bar_ticks(item.bars)
        if len(ticks) < 2:
            continue
        pitches, onsets = bar_attributes(ids, ticks, midi, bins)
        for bar in range(len(ticks) - 1):
            inputs.append((item.grid, mask_bars(ids, ticks, [bar], midi, model.mask_id)))
            truth_pitch.append(pitches[bar])
            truth_onset.append(onsets[bar])
    if not inputs:
        return {"bars": 0}
    predicted_pitch, predicted_onset = [], []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        pitch, onset = model.bar_logits(pad_grids([g for g, _ in chunk]), pad_ids([m for _, m in chunk]))
        predicted_pitch.append((pitch > 0).numpy())
        predicted_onset.append((onset > 0).numpy())
    truth_pitch_array, truth_onset_array = np.stack(truth_pitch), np.stack(truth_onset)
    scores = bar_scores(
        np.concatenate(predicted_pitch), truth_pitch_array, np.concatenate(predicted_onset), truth_onset_array
    )
    # For scale: every bar given the pitches and bins present in most of these bars (the best
    # answer that ignores the image and the music around the bar).
    prior_pitch = np.broadcast_to(truth_pitch_array.mean(axis=0) > 0.5, truth_pitch_array.shape)
    prior_onset = np.broadcast_to(truth_onset_array.mean(axis=0) > 0.5, truth_onset_array.shape)
    prior = bar_scores(prior_pitch, truth_pitch_array, prior_onset, truth_onset_array)
    scores["prior"] = {k: v for k, v in prior.items() if k != "bars"}
    return scores


def bar_scores(
    pitch: np.ndarray, pitch_truth: np.ndarray, onset: np.ndarray, onset_truth: np.ndarray
) -> dict[str, float]:
    """Exact-set accuracy and F1 of predicted bar attributes (``bool [N, labels]`` each)."""
    return {
        "bars": len(pitch),
        "pitch_set_accuracy": float((pitch == pitch_truth).all(axis=1).mean()),
        "onset_set_accuracy": float((onset == onset_truth).all(axis=1).mean()),
        "pitch_f1": _f1(pitch, pitch_truth),
        "onset_f1": _f1(onset, onset_truth),
    }


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    hits = float((predicted & truth).sum())
    return 2 * hits / max(float(predicted.sum() + truth.sum()), 1.0)


@torch.no_grad()
def pair_features(model: ScoreMidiModel, items: Sequence[SimItem], batch: int = 32) -> np.ndarray:
    """The pooled encoder state of each item's pair ``float64 [N, d]``."""
    model.eval()
    out = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        grids, midi = pad_grids([i.grid for i in chunk]), pad_ids([i.midi_ids(model.vocab) for i in chunk])
        out.append(model.features(grids, midi).double().numpy())
    return np.concatenate(out)


def probe(
    model: ScoreMidiModel, items: Sequence[SimItem], seed: int = 0, share: float = 0.3
) -> dict[str, float | int | list[str]]:
    """Linear probe of the items' labels on the pretrained and an untrained encoder (see above)."""
    from umt.style.probe import held_out_groups, linear_probe

    labelled = [item for item in items if item.label]
    held = held_out_groups([item.piece for item in labelled], share, seed) if labelled else set()
    train = [item for item in labelled if item.piece not in held]
    test = [item for item in labelled if item.piece in held]
    classes = sorted({item.label for item in train})
    if len(classes) < 2 or not test:
        return {"items": len(labelled), "classes": classes}
    train_y = np.array([classes.index(item.label) for item in train])
    test_y = np.array([classes.index(item.label) if item.label in classes else -1 for item in test])
    torch.manual_seed(seed)
    untrained = ScoreMidiModel(model.config, model.vocab)
    result: dict[str, float | int | list[str]] = {
        "train_items": len(train),
        "test_items": len(test),
        "classes": classes,
    }
    for name, encoder in (("pretrained", model), ("untrained", untrained)):
        result[name] = linear_probe(
            pair_features(encoder, train), train_y, pair_features(encoder, test), test_y, len(classes)
        )
    result["majority"] = float((test_y == np.bincount(train_y).argmax()).mean())
    return result


def evaluate_model(folder, test: Sequence[SimItem], labelled: Sequence[SimItem], seed: int = 0) -> dict:
    """Retrieval by each scorer the model was trained for and masked-bar accuracy on ``test``, and
    the probe on ``labelled`` (pieces held out)."""
    out: dict = {"test_items": len(test)}
    if len(test) >= 2:
        out["retrieval"] = {scorer: retrieval(folder.model, test, scorer) for scorer in folder.scorers}
    if folder.objectives.get("masked_bars", 0) > 0 and test:
        out["masked_bars"] = masked_bar_accuracy(folder.model, test)
    out["probe"] = probe(folder.model, labelled, seed)
    return out


def report_markdown(evaluation: dict) -> str:
    """:func:`evaluate_model`'s figures as Markdown tables."""
    lines: list[str] = []
    retrieval_figures = evaluation.get("retrieval") or {}
    if retrieval_figures:
        lines += [
            f"Retrieval among {evaluation['test_items']} test items:",
            "",
            "| scorer | direction | R@1 | R@5 | R@10 | MRR |",
            "|---|---|---|---|---|---|",
        ]
        chance = None
        for scorer, figures in retrieval_figures.items():
            chance = figures["chance"]
            for direction in ("image_to_midi", "midi_to_image"):
                lines.append(
                    f"| {scorer} | {direction.replace('_to_', ' -> ')} | {_row(figures[direction])} |"
                )
        lines += [f"| chance | either | {_row(chance)} |", ""]
    bars = evaluation.get("masked_bars")
    if bars and bars.get("bars"):
        prior = bars["prior"]
        lines += [
            f"Masked bars ({bars['bars']} bars, each masked alone): "
            f"pitch set right {bars['pitch_set_accuracy']:.3f}, "
            f"onset set right {bars['onset_set_accuracy']:.3f}, "
            f"pitch F1 {bars['pitch_f1']:.3f}, onset F1 {bars['onset_f1']:.3f}; the same bars' majority "
            f"answer: {prior['pitch_set_accuracy']:.3f}, {prior['onset_set_accuracy']:.3f}, "
            f"{prior['pitch_f1']:.3f}, {prior['onset_f1']:.3f}",
            "",
        ]
    found = evaluation.get("probe") or {}
    if "pretrained" in found:
        lines += [
            f"Probe ({len(found['classes'])} classes; {found['train_items']} items to fit, "
            f"{found['test_items']} of held-out pieces):",
            "",
            "| encoder | held-out accuracy |",
            "|---|---|",
            f"| pre-trained | {found['pretrained']:.3f} |",
            f"| same size and seed, not pre-trained | {found['untrained']:.3f} |",
            f"| majority class | {found['majority']:.3f} |",
            "",
        ]
    return "\n".join(lines)


def _row(figures: dict[str, float]) -> str:
    return " | ".join(f"{figures[name]:.3f}" for name in ("recall@1", "recall@5", "recall@10", "mrr"))
