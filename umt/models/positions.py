"""Modality-specific positional embeddings: 2-D (row, column) for score images, 1-D otherwise.

Image sequences are flattened column by column ("vertical flattening"): after ``SOS`` (or a
``SEP``) a height token gives the system height ``H`` in token rows, then the system's codes
follow, token ``i`` of the system (0-based) sitting at ``row = i mod H`` and column ``i div H``.
Columns keep counting across systems (the first column of system 2 follows the last column of
system 1), so every code has a distinct (row, column) and the bidirectional encoder still sees
the order of the systems. Special rows (PAD, SOS, EOS, SEP, height) get a dedicated extra row
index and the column index of the next column to come.
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


class ModalityPositions(nn.Module):
    """Learned positional embeddings, one table per modality.

    Image sequences use ``row [max_rows + 1, d] + column [max_len, d]``; the other modalities a
    1-D table ``[max_len, d]`` each (stored as one ``[M * max_len, d]`` table).
    """

    def __init__(self, vocab: Vocabulary, max_len: int, max_rows: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.max_rows = max_rows
        # the planar scheme reads an image's own height tokens (umt.modalities.image)
        self.image_index = vocab.modality_index("image") if "image" in vocab.modalities else -1
        self.height_start = vocab["image/height"].start if self.image_index >= 0 else 0
        self.height_stop = vocab["image/height"].stop if self.image_index >= 0 else 0
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
            rows, columns = image_positions(first_ids, self.height_start, self.height_stop, self.max_rows)
            rows, columns = rows[:, start:], columns[:, start:].clamp(max=self.max_len - 1)
            planar = self.image_row(rows) + self.image_column(columns)
            out = torch.where(is_image[:, None, None], planar, out)
        return out
