"""U-MusT's layout of a source image of several systems, for models imported from it.

UMT gives each system its own height: ``SOS, height(h1), codes1, SEP, height(h2), codes2, ..., EOS``
(:func:`umt.tokenizers.image.flatten_systems`). U-MusT (``TokenIdxHandler.__call__`` on a list of
crops) pads every system below to the tallest one, ``H``, with a per-codebook pad code that the
encoder reads like any code, so that each column holds ``H`` rows and the row of a code is its index
mod ``H`` across all systems. :func:`pad_systems_to_tallest` turns UMT rows into that layout: every
height row says ``H`` and each column of a shorter system gets ``H - h`` *fill* rows below it. The
fill row holds ``fill_id`` (one id past the vocabulary, an extra row of the encoder's embedding
table: the sum of U-MusT's pad-code embeddings) and PAD. Sources of one system are left as they
are, as are rows that do not parse as systems (no model input does that).
"""

from __future__ import annotations

import torch
from torch import Tensor

from umt.vocab import PAD_ID, Vocabulary


def pad_systems_to_tallest(
    src: Tensor, src_mask: Tensor, is_image: Tensor, vocab: Vocabulary, fill_id: int
) -> tuple[Tensor, Tensor]:
    """``src [B, S, K]``, ``src_mask [B, S]`` (True on each item's leading rows), ``is_image [B]`` ->
    the same in U-MusT's multi-system layout ``[B, S', K]`` (``S' >= S``)."""
    sep = vocab["image/sep"].start
    multi = is_image & ((src[..., 0] == sep) & src_mask).any(dim=1)
    if not bool(multi.any()):
        return src, src_mask
    items = []
    for b in range(src.shape[0]):
        rows = src[b, : int(src_mask[b].sum())]
        laid_out = _pad_item(rows, vocab, fill_id) if bool(multi[b]) else None
        items.append(rows if laid_out is None else laid_out)
    longest = max(len(item) for item in items)
    out = src.new_full((len(items), longest, src.shape[-1]), PAD_ID)
    mask = torch.zeros(len(items), longest, dtype=torch.bool, device=src.device)
    for b, item in enumerate(items):
        out[b, : len(item)] = item
        mask[b, : len(item)] = True
    return out, mask


def _pad_item(rows: Tensor, vocab: Vocabulary, fill_id: int) -> Tensor | None:
    """One item's rows ``[L, K]`` (SOS ... EOS) padded, or None when they are not systems."""
    sep = vocab["image/sep"].start
    heights = vocab["image/height"]
    first = rows[:, 0].tolist()
    cuts = [i for i, value in enumerate(first) if value == sep]
    bounds = list(zip([0, *cuts], [*cuts, len(first) - 1], strict=True))  # (SOS or SEP, next SEP or EOS)
    systems = []
    for start, stop in bounds:
        part = rows[start + 1 : stop]
        if len(part) == 0 or not heights.start <= int(part[0, 0]) < heights.stop:
            return None
        height = int(part[0, 0]) - heights.start + 1
        codes = part[1:]
        if len(codes) % height:
            return None
        systems.append((height, codes))
    tallest = max(height for height, _ in systems)
    width = rows.shape[-1]
    height_row = torch.as_tensor(
        vocab.special_row(vocab.height(tallest)), dtype=rows.dtype, device=rows.device
    )
    fill_row = torch.full((width,), PAD_ID, dtype=rows.dtype, device=rows.device)
    fill_row[0] = fill_id
    pieces = [rows[:1]]
    for index, (height, codes) in enumerate(systems):
        if index:
            pieces.append(rows[cuts[0] : cuts[0] + 1])  # a SEP row
        columns = codes.reshape(-1, height, width)
        fills = fill_row.expand(columns.shape[0], tallest - height, width)
        pieces += [height_row[None], torch.cat([columns, fills], dim=1).reshape(-1, width)]
    pieces.append(rows[-1:])
    return torch.cat(pieces)


def laid_out_rows(content: Tensor, vocab: Vocabulary) -> int:
    """How many content rows ``content [T, K]`` (an image source without SOS/EOS) takes once laid out."""
    wrapped = torch.cat([content[:1], content, content[:1]])  # stand-ins for SOS and EOS
    laid_out = _pad_item(wrapped, vocab, fill_id=vocab.size)
    return len(content) if laid_out is None else len(laid_out) - 2


def column_groups(rows: Tensor, src_mask: Tensor, in_column: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Which encoder position each source row joins when an image's code columns are read whole.

    ``rows [B, S]``: each row's row index in its column (:func:`umt.models.positions.image_positions`),
    ``src_mask [B, S]``, ``in_column [B, S]``: the real rows that are codes of an image. Every code
    column (its rows from row 0 on) becomes one position, every other real row one of its own, in
    order. Returns ``group [B, S]`` (the position of each real row; 0 on padding), ``slot [B, S]``
    (the row within its column; 0 for rows of their own), ``is_column [B, S']`` and ``group_mask
    [B, S']`` (True on each item's leading positions).
    """
    starts = src_mask & (~in_column | (rows == 0))
    group = (torch.cumsum(starts.long(), dim=1) - 1).clamp(min=0) * src_mask
    counts = starts.sum(dim=1)
    length = max(int(counts.max()), 1)
    group_mask = torch.arange(length, device=rows.device)[None, :] < counts[:, None]
    is_column = torch.zeros(group_mask.shape, dtype=torch.long, device=rows.device)
    is_column = is_column.scatter_add(1, group, in_column.long()) > 0
    slot = torch.where(in_column, rows, 0)
    return group, slot, is_column, group_mask
