"""Modality-specific positional embeddings: 2-D (row, column) for score images, 1-D otherwise.

Image sequences are flattened column by column ("vertical flattening"): after ``SOS`` (or a
``SEP``) a height token gives the system height ``H`` in token rows, then the system's codes
follow, token ``i`` of the system (0-based) sitting at ``row = i mod H`` and column ``i div H``.
Columns keep counting across systems (the first column of system 2 follows the last column of
system 1), so every code has a distinct (row, column) and the bidirectional encoder still sees
the order of the systems. Special rows (PAD, SOS, EOS, SEP, height) get a dedicated extra row
index and the column index of the next column to come.

U-MusT's rules (``scheme="umust-source"`` / ``"umust-target"``, for models imported from it) use
the same tables but give some rows no position at all (a zero embedding): the first row of every
sequence, and in target images the codes before any height token, the EOS row and every row after
it. A height row takes row 0 of the next column, a SEP row the position of the last code before
it; a source image's EOS row takes row 0 of the next column. (Their rules differ
from these only in outputs no model should make: a height token with no SEP before it keeps the
current column there, where these start the next.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from umt.vocab import Vocabulary


def image_positions(
    first_ids: Tensor, height_start: int, height_stop: int, max_rows: int
) -> tuple[Tensor, Tensor]:
    """Rows and columns ``[B, L]`` of an image-token sequence, vectorised.

    ``first_ids [B, L]`` are the codebook-0 ids. Special ids are those below ``height_stop``
    (PAD, SOS, EOS, SEP and height tokens ``[height_start, height_stop)``); they get row
    ``max_rows``. Codes before any height token are laid out as one system of ``max_rows`` rows.
    """
    batch, length = first_ids.shape
    special = first_ids < height_stop
    is_height = special & (first_ids >= height_start)
    content = ~special
    steps = torch.arange(length, device=first_ids.device).expand(batch, length)
    last_height = torch.cummax(torch.where(is_height, steps, -1), dim=1).values
    seen_height = last_height >= 0
    at_last_height = last_height.clamp(min=0)
    heights = torch.gather(first_ids - height_start + 1, 1, at_last_height)
    heights = torch.where(seen_height, heights, max_rows).clamp(1, max_rows)
    content_count = torch.cumsum(content.long(), dim=1)  # inclusive
    before_system = torch.where(seen_height, torch.gather(content_count, 1, at_last_height), 0)
    index_in_system = (content_count - before_system - 1).clamp(min=0)
    row_in_column = index_in_system % heights
    starts_column = content & (row_in_column == 0)
    columns_so_far = torch.cumsum(starts_column.long(), dim=1)
    rows = torch.where(content, row_in_column, max_rows)
    columns = torch.where(content, columns_so_far - 1, columns_so_far)
    return rows, columns


SCHEMES = ("umt", "umust-source", "umust-target")


def umust_image_positions(
    first_ids: Tensor,
    height_start: int,
    height_stop: int,
    max_rows: int,
    eos_id: int,
    sep_id: int,
    target: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rows, columns and the rows without a position ``[B, L]`` under U-MusT's rules (module docstring).

    Codes are placed as :func:`image_positions` places them; special rows differ.
    """
    batch, length = first_ids.shape
    special = first_ids < height_stop
    content = ~special
    is_height = special & (first_ids >= height_start)
    seen_height = torch.cummax(is_height.long(), dim=1).values.bool()
    is_eos, is_sep = first_ids == eos_id, first_ids == sep_id
    if target:  # codes before any height token take no place (nor column) in U-MusT's layout
        first_ids = torch.where(content & ~seen_height, eos_id, first_ids)
    rows, columns = image_positions(first_ids, height_start, height_stop, max_rows)
    steps = torch.arange(length, device=first_ids.device).expand(batch, length)
    null = steps == 0
    null = null | (first_ids == 0)  # padding rows
    rows = torch.where(is_height, 0, rows)
    last_code = torch.cummax(torch.where(content, steps, -1), dim=1).values
    at = last_code.clamp(min=0)
    rows = torch.where(is_sep, torch.gather(rows, 1, at), rows)
    columns = torch.where(is_sep, torch.gather(columns, 1, at), columns)
    null = null | (is_sep & (last_code < 0))
    if target:
        null = null | (content & ~seen_height)
        after_eos = torch.cummax(is_eos.long(), dim=1).values.bool()
        null = null | after_eos
    else:
        rows = torch.where(is_eos, 0, rows)
    return rows, columns, null


class ModalityPositions(nn.Module):
    """Learned positional embeddings, one table per modality.

    Image sequences use ``row [max_rows + 1, d] + column [max_len, d]``; the other modalities a
    1-D table ``[max_len, d]`` each (stored as one ``[M * max_len, d]`` table).
    """

    def __init__(
        self, vocab: Vocabulary, max_len: int, max_rows: int, d_model: int, scheme: str = "umt"
    ) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"position scheme must be one of {SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.max_len = max_len
        self.max_rows = max_rows
        # the planar scheme reads an image's own height tokens (umt.modalities.image)
        self.image_index = vocab.modality_index("image") if "image" in vocab.modalities else -1
        self.height_start = vocab["image/height"].start if self.image_index >= 0 else 0
        self.height_stop = vocab["image/height"].stop if self.image_index >= 0 else 0
        self.image_eos = vocab.eos("image") if self.image_index >= 0 else -1
        self.image_sep = vocab["image/sep"].start if self.image_index >= 0 else -1
        self.sequence = nn.Embedding(len(vocab.modalities) * max_len, d_model)
        self.image_row = nn.Embedding(max_rows + 1, d_model)
        self.image_column = nn.Embedding(max_len, d_model)

    def forward(self, first_ids: Tensor, modality: Tensor, start: int = 0) -> Tensor:
        """``first_ids [B, L]`` (codebook-0 ids), ``modality [B]`` -> embeddings ``[B, L - start, d]``.

        Only positions ``start..L-1`` are embedded (cached decoding passes the whole prefix, whose
        height tokens fix the image positions, but needs the last position only).
        """
        length = first_ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence of {length} rows exceeds the model's maximum length {self.max_len}")
        steps = torch.arange(start, length, device=first_ids.device)
        out = self.sequence(modality[:, None] * self.max_len + steps[None, :])
        is_image = modality == self.image_index
        if bool(is_image.any()):
            if self.scheme == "umt":
                rows, columns = image_positions(first_ids, self.height_start, self.height_stop, self.max_rows)
                null = None
            else:
                rows, columns, null = umust_image_positions(
                    first_ids,
                    self.height_start,
                    self.height_stop,
                    self.max_rows,
                    self.image_eos,
                    self.image_sep,
                    target=self.scheme == "umust-target",
                )
            rows, columns = rows[:, start:], columns[:, start:].clamp(max=self.max_len - 1)
            planar = self.image_row(rows) + self.image_column(columns)
            if null is not None:
                planar = planar.masked_fill(null[:, start:, None], 0.0)
            out = torch.where(is_image[:, None, None], planar, out)
        return out
