"""SIM ("Score Images as a Modality", Sensors 24(15):5017, 2024) in UMT: one Transformer encoder
over a score image's code grid and a MIDI event sequence, side by side.

Shapes: ``B`` batch, ``H x W`` an image's code grid, ``K`` codebooks, ``L`` MIDI rows, ``d`` width.

* **Image stem.** The code grid ``[B, H, W, K]`` (unified-vocabulary ids, PAD outside the image)
  is embedded as the sum of its ``K`` id embeddings, average-pooled over ``image_pool x
  image_pool`` cells (the padded cells left out), and given learned row and column embeddings. A
  wide system of the demo's 8x codes is ~3,000 cells; pooled by 4 it is ~200 rows.
* **MIDI stem.** MIDI event ids ``[B, L]`` (:mod:`umt.tokenizers.midi`) embedded with a learned
  position; :attr:`ScoreMidiModel.mask_id` (one past the vocabulary) stands for a masked bar.
* A segment embedding tells the two apart; pre-LN encoder blocks (:mod:`umt.models.transformer`)
  read them together (the pair) or one at a time (a tower).
* **Heads.** ``match`` (are these the same music?) on the pair's mean state; ``pitch`` and
  ``onset`` (a masked bar's pitch set and onset bins, multi-label) on each mask row's state; a
  projection head a tower for the contrastive variant, where image and MIDI are encoded apart (two
  towers sharing the encoder) and compared by cosine at a learned temperature.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt.models.transformer import EncoderLayer
from umt.vocab import PAD_ID, Vocabulary

IMAGE, MIDI = 0, 1
"""Segment indices."""


@dataclass
class SimConfig:
    d_model: int = 128
    n_heads: int = 4
    layers: int = 4
    ff_dim: int = 512
    dropout: float = 0.1
    image_pool: int = 4
    """Code cells pooled into one encoder row per side."""
    max_grid_rows: int = 64
    """Pooled grid rows (row-embedding table size)."""
    max_grid_columns: int = 1024
    max_midi_rows: int = 1024
    onset_bins: int = 48
    """A bar is cut into this many equal parts for its onset attribute (48: 16ths and triplets)."""
    embedding_dim: int = 64
    """Width of the contrastive embedding."""

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "layers", "ff_dim", "image_pool", "onset_bins", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"SimConfig: d_model={self.d_model} not divisible by {self.n_heads} heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SimConfig.dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def tiny(cls) -> SimConfig:
        """For tests: seconds on a CPU."""
        return cls(d_model=32, n_heads=2, layers=2, ff_dim=64, dropout=0.0, image_pool=2, embedding_dim=16)

    def to_dict(self) -> dict:
        return asdict(self)


class ScoreMidiModel(nn.Module):
    """The SIM encoder and its heads (see the module docstring)."""

    def __init__(self, config: SimConfig, vocab: Vocabulary) -> None:
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.mask_id = vocab.size
        d = config.d_model
        self.token_embedding = nn.Embedding(vocab.size + 1, d, padding_idx=PAD_ID)
        self.grid_row = nn.Embedding(config.max_grid_rows, d)
        self.grid_column = nn.Embedding(config.max_grid_columns, d)
        self.midi_position = nn.Embedding(config.max_midi_rows, d)
        self.segment = nn.Embedding(2, d)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(
            # no attention-weight dropout: it keeps CPU attention off the fused kernel
            EncoderLayer(d, config.n_heads, config.ff_dim, config.dropout, attention_dropout=0.0)
            for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(d)
        self.match_head = nn.Linear(d, 1)
        self.pitch_head = nn.Linear(d, 128)
        self.onset_head = nn.Linear(d, config.onset_bins)
        # One projection head a tower. Batch norm takes out what every input's pooled state shares:
        # without it the towers' embeddings all pointed one way (cosines of 0.999) and InfoNCE
        # stayed at ln(batch) on the corpus (SimCLR's heads have it for the same reason).
        self.image_projection = _projection(d, config.embedding_dim)
        self.midi_projection = _projection(d, config.embedding_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        """ln of the contrastive logits' scale (CLIP's learned temperature, from 1 / 0.07)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.token_embedding.weight[PAD_ID].zero_()

    # ------------------------------------------------------------------ stems
    def embed_image(self, grid: Tensor) -> tuple[Tensor, Tensor]:
        """Code grids ``[B, H, W, K]`` -> rows ``[B, R, d]`` and their mask ``[B, R]``."""
        p = self.config.image_pool
        batch, height, width, _ = grid.shape
        grid = F.pad(grid, (0, 0, 0, (-width) % p, 0, (-height) % p), value=PAD_ID)
        rows, columns = grid.shape[1] // p, grid.shape[2] // p
        if rows > self.config.max_grid_rows or columns > self.config.max_grid_columns:
            raise ValueError(
                f"an image of {rows} x {columns} pooled cells exceeds the model's "
                f"{self.config.max_grid_rows} x {self.config.max_grid_columns}"
            )
        valid = (grid[..., 0] != PAD_ID).float()  # [B, H', W']
        cells = self.token_embedding(grid).sum(dim=-2) * valid[..., None]
        sums = cells.view(batch, rows, p, columns, p, -1).sum(dim=(2, 4))
        counts = valid.view(batch, rows, p, columns, p).sum(dim=(2, 4))
        x = sums / counts.clamp_min(1.0)[..., None]
        x = x + self.grid_row.weight[:rows, None] + self.grid_column.weight[None, :columns]
        x, mask = x.reshape(batch, rows * columns, -1), (counts > 0).view(batch, -1)
        # Real cells first, then as few padded ones as the longest image needs: a batch padded to
        # its widest and tallest image would otherwise attend over mostly empty cells.
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, : int(mask.sum(1).max())]
        x = torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
        return x + self.segment.weight[IMAGE], torch.gather(mask, 1, order)

    def embed_midi(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """MIDI ids ``[B, L]`` (PAD-padded) -> rows ``[B, L, d]`` and their mask ``[B, L]``."""
        if ids.shape[1] > self.config.max_midi_rows:
            raise ValueError(f"{ids.shape[1]} MIDI rows exceed the model's {self.config.max_midi_rows}")
        x = self.token_embedding(ids) + self.midi_position.weight[: ids.shape[1]] + self.segment.weight[MIDI]
        return x, ids != PAD_ID

    # ---------------------------------------------------------------- encoder
    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        """Rows ``[B, N, d]`` with mask ``[B, N]`` -> states ``[B, N, d]``."""
        x = self.dropout(x)
        for layer in self.encoder:
            x = layer(x, mask[:, None, None, :])
        return self.norm(x)

    def encode_pair(self, grid: Tensor, midi: Tensor) -> tuple[Tensor, Tensor, int]:
        """The pair read together: states ``[B, R + L, d]``, mask, and ``R`` (where MIDI begins)."""
        image_rows, image_mask = self.embed_image(grid)
        midi_rows, midi_mask = self.embed_midi(midi)
        mask = torch.cat([image_mask, midi_mask], dim=1)
        return self.encode(torch.cat([image_rows, midi_rows], dim=1), mask), mask, image_rows.shape[1]

    @staticmethod
    def pooled(states: Tensor, mask: Tensor) -> Tensor:
        """Mean of the real rows' states ``[B, d]``."""
        weights = mask.to(states.dtype)[..., None]
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    # ------------------------------------------------------------------ heads
    def match_logits(self, grid: Tensor, midi: Tensor) -> Tensor:
        """Logit ``[B]`` that image ``b`` and MIDI ``b`` are the same music."""
        states, mask, _ = self.encode_pair(grid, midi)
        return self.match_head(self.pooled(states, mask))[:, 0]

    def bar_logits(self, grid: Tensor, midi: Tensor) -> tuple[Tensor, Tensor]:
        """Pitch ``[N, 128]`` and onset ``[N, onset_bins]`` logits of the ``N`` mask rows of
        ``midi``, in row-major order (example, then position)."""
        states, _, start = self.encode_pair(grid, midi)
        masked = states[:, start:][midi == self.mask_id]
        return self.pitch_head(masked), self.onset_head(masked)

    def features(self, grid: Tensor, midi: Tensor) -> Tensor:
        """The pair's pooled encoder state ``[B, d]`` (what the downstream probes read)."""
        states, mask, _ = self.encode_pair(grid, midi)
        return self.pooled(states, mask)

    def image_embedding(self, grid: Tensor) -> Tensor:
        """Unit-length contrastive embedding ``[B, E]`` of images read alone."""
        return self._tower(*self.embed_image(grid), self.image_projection)

    def midi_embedding(self, midi: Tensor) -> Tensor:
        """Unit-length contrastive embedding ``[B, E]`` of MIDI read alone."""
        return self._tower(*self.embed_midi(midi), self.midi_projection)

    def contrastive_scale(self) -> Tensor:
        """The factor on cosines that makes the contrastive logits (at most 100, as CLIP)."""
        return self.logit_scale.exp().clamp(max=100.0)

    def _tower(self, rows: Tensor, mask: Tensor, projection: nn.Module) -> Tensor:
        return F.normalize(projection(self.pooled(self.encode(rows, mask), mask)), dim=-1)


def _projection(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, out))
