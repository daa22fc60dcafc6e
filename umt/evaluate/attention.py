"""Score following from the model's own attention: where in the score image an image-to-audio
translation looks while it plays (``umt eval attention``), as the paper's figure shows.

The model first generates the audio of the image. Then one teacher-forced pass over (image,
generated audio) records every decoder layer's cross-attention weights (forward hooks on the
layers' :class:`~umt.models.transformer.CrossAttention`; the weights are recomputed from the
queries and the memory keys exactly as ``scaled_dot_product_attention`` uses them). Averaged over
layers and heads, and summed over the rows of each image code column, they give for every audio
frame a distribution over the image's columns: its argmax is the column the model follows.

Outputs: a PNG (the input systems side by side on top, the attention below: one row per audio
frame, darker = more attention, columns under the image pixels they encode) and a JSON alignment
(audio frame -> system, code column, pixel x, its attention share).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.errors import InputError


def layer_weights(model: Any, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Each decoder layer's cross-attention weights ``[B, H, T-1, S]`` in a teacher-forced pass."""
    captured: list[torch.Tensor] = []

    def record(module: Any, inputs: tuple, _output: torch.Tensor) -> None:
        x, (keys, _values), mask = inputs
        batch_size, length, _ = x.shape
        query = module.query(x).view(batch_size, length, module.n_heads, module.head_dim).transpose(1, 2)
        scores = query @ keys.transpose(-1, -2) / math.sqrt(module.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        captured.append(torch.softmax(scores.float(), dim=-1))

    handles = [layer.cross_attn.register_forward_hook(record) for layer in model.decoder]
    try:
        with torch.no_grad():
            model(
                batch["src"],
                batch["src_mask"],
                batch["tgt"],
                batch["tgt_mask"],
                batch["tgt_modality"],
                batch["src_modality"],
            )
    finally:
        for handle in handles:
            handle.remove()
    return captured


@dataclass
class ImageColumns:
    """Where each source row of an image lies: system and code column (-1 for special rows)."""

    system: np.ndarray
    column: np.ndarray

    @classmethod
    def of(cls, src_ids: np.ndarray, vocab: Any, whole_columns: bool = False) -> ImageColumns:
        """From the codebook-0 ids of a framed image source (SOS, height, codes, sep, ..., EOS).

        ``whole_columns``: one entry per encoder position of a model that reads each code column
        as one position (``TranslatorConfig.source_columns``) instead of one per row."""
        system = np.full(len(src_ids), -1)
        column = np.full(len(src_ids), -1)
        keep = np.ones(len(src_ids), dtype=bool)
        codes, heights = vocab.codebook_range("image", 0), vocab["image/height"]
        current, height, seen = -1, 0, 0
        for index, token in enumerate(int(t) for t in src_ids):
            size = vocab.height_value(token) if heights.contains(token) else 0
            if size:
                current, height, seen = current + 1, size, 0
            elif codes.contains(token) and height:
                system[index], column[index] = current, seen // height
                keep[index] = seen % height == 0
                seen += 1
        if whole_columns:
            return cls(system[keep], column[keep])
        return cls(system, column)


def column_attention(weights: np.ndarray, columns: ImageColumns) -> list[np.ndarray]:
    """Per system, ``[T, columns]``: each frame's attention summed over the rows of each column."""
    out = []
    for system in range(int(columns.system.max()) + 1):
        chosen = columns.system == system
        width = int(columns.column[chosen].max()) + 1
        per_column = np.zeros((weights.shape[0], width))
        np.add.at(per_column.T, columns.column[chosen], weights[:, chosen].T)
        out.append(per_column)
    return out


def follow_score(pipeline: Any, image: str | Path, generation: Any, out_png: Path) -> dict[str, Any]:
    """Generate the image's audio, plot where the model attends, write ``out_png`` and its JSON."""
    pipeline.check_task("i2a")
    source = pipeline.image_file_rows(image)
    generated = pipeline.generate("i2a", [source], generation)[0].rows
    if len(generated) == 0:
        raise InputError("the model generated no audio for it (EOS at once)", image)
    alignment, per_system, systems = attention_alignment(pipeline, image, source, generated)
    _plot(systems, per_system, out_png)
    from umt.utils.io import atomic_write_text

    atomic_write_text(out_png.with_suffix(".json"), json.dumps(alignment, indent=1) + "\n")
    return alignment


def attention_alignment(
    pipeline: Any, image: str | Path, source: np.ndarray, generated: np.ndarray
) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """Where the model looks while it writes ``generated`` (audio rows) from ``source`` (the image's
    rows): the alignment (audio frame -> system and x pixel), the attention per system
    ``[frames, columns]`` and the systems as the tokenizer saw them."""
    from umt.data.pipeline import collate
    from umt.tasks import get_task

    task = get_task("i2a")
    batch = collate([(source, generated, task.source, task.target, 0)], pipeline.vocab)
    batch = {k: v.to(pipeline.device) for k, v in batch.items()}
    weights = torch.stack(layer_weights(pipeline.model, batch)).mean(dim=(0, 2))[0].cpu().numpy()
    weights = weights[: len(generated)]  # query i (after SOS and i rows) predicts frame i
    whole = pipeline.model.config.source_columns
    columns = ImageColumns.of(batch["src"][0, :, 0].cpu().numpy(), pipeline.vocab, whole_columns=whole)
    per_system = column_attention(weights, columns)
    systems = _system_images(pipeline, image)
    return _alignment(per_system, systems, pipeline), per_system, systems


def _system_images(pipeline: Any, image: str | Path) -> list[np.ndarray]:
    """The input systems as the tokenizer sees them (preprocessed), ``uint8 [H, W]`` each."""
    from umt.inference import to_gray
    from umt.tokenizers.image import stacked_systems, to_uint8_image

    gray = to_gray(str(image))
    systems = stacked_systems(image, gray) or [gray]
    return [to_uint8_image(pipeline.preprocess_image(system)[0]) for system in systems]


def _alignment(per_system: list[np.ndarray], systems: list[np.ndarray], pipeline: Any) -> dict[str, Any]:
    hop_seconds = pipeline.audio_tokenizer.hop_length / pipeline.sample_rate
    frames = []
    for frame in range(per_system[0].shape[0]):
        shares = [attention[frame] for attention in per_system]
        system = int(np.argmax([share.max() for share in shares]))
        column = int(np.argmax(shares[system]))
        pixels = systems[system].shape[1] / per_system[system].shape[1]
        frames.append(
            {
                "time": round(frame * hop_seconds, 4),
                "system": system,
                "column": column,
                "x": round((column + 0.5) * pixels, 1),
                "share": round(float(shares[system][column]), 4),
            }
        )
    return {"frame_seconds": hop_seconds, "frames": frames}


def _plot(systems: list[np.ndarray], per_system: list[np.ndarray], out_png: Path) -> None:
    from PIL import Image

    from umt.utils.io import atomic_write_bytes

    height = max(s.shape[0] for s in systems)
    tops = [np.pad(s, ((0, height - s.shape[0]), (0, 0)), constant_values=255) for s in systems]
    maps = []
    for system, attention in zip(systems, per_system):
        scaled = attention / max(float(attention.max()), 1e-9)
        spread = np.repeat(scaled, int(np.ceil(system.shape[1] / attention.shape[1])), axis=1)[
            :, : system.shape[1]
        ]
        maps.append(np.rint(255 * (1 - spread)).astype(np.uint8))
    top = np.concatenate(tops, axis=1)
    bottom = np.concatenate(maps, axis=1)
    gap = np.full((4, top.shape[1]), 128, dtype=np.uint8)
    picture = np.concatenate([top, gap, bottom], axis=0)
    import io

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_png, buffer.getvalue())
