"""The unified translator: one encoder-decoder Transformer over rows of ``K`` unified-vocabulary ids.

Shapes: ``B`` batch, ``S`` source rows, ``T`` target rows, ``K`` codebooks, ``V`` vocabulary size,
``d`` model width. A *row* is the ``K`` ids of one sequence position (see :mod:`umt.vocab`).

* Input embedding of a row: the sum of its ``K`` id embeddings (one table over the whole
  vocabulary, PAD = 0), plus a positional embedding specific to the sequence's modality
  (:mod:`umt.models.positions`: 2-D for images, 1-D otherwise). Every encoder position also gets a
  learned embedding of the *target* modality, which tells the encoder the task.
* With ``source_columns``, each code column of a source image becomes one encoder position
  (:meth:`Translator.read_columns`): the memory is then ``[B, S', d]`` with ``S'`` well below ``S``.
* Source modality: taken from ``src_modality`` when given, otherwise from the SOS id in
  ``src[:, 0, 0]`` (``vocab.sos(modality)``). Modality indices are ``vocab.modality_index(name)``.
* Encoder and decoder: pre-LN blocks (:mod:`umt.models.transformer`).
* Codebook sub-decoder (:mod:`umt.models.subdecoder`) turns each decoder state into ``K`` logits
  rows; one output projection ``Linear(d, V)`` is shared by all slots. Logits are masked with
  ``vocab.allowed_mask(target modality)`` (disallowed ids get ``-inf``).
* Loss: cross-entropy per codebook. A (row, codebook) target counts when the row is real
  (``tgt_mask``) and the target modality *uses* that codebook, i.e. more than one id is allowed
  there. PAD targets in codebooks ``1..`` of image/audio special rows (EOS, SEP, height) are
  counted: PAD is the answer the model must give. Codebooks a single-stream target does not use
  (only PAD allowed, so the loss would be exactly 0) are left out, so per-codebook figures are
  not diluted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt.generation.filters import LogitFilter, choose, sampling_filters
from umt.models.positions import ModalityPositions, image_positions
from umt.models.source_layout import column_groups, pad_systems_to_tallest
from umt.models.subdecoder import CodebookSubDecoder
from umt.models.transformer import DecoderLayer, EncoderLayer, KVCache
from umt.vocab import PAD_ID, Vocabulary

POSITION_RULES = ("umt", "umust")
LOSS_AVERAGES = ("token", "example")
"""How :meth:`Translator.loss` averages: over target tokens or over examples."""


@dataclass
class TranslatorConfig:
    """Sizes of a :class:`Translator` (plain dataclass: ``asdict`` goes into ``config.json``)."""

    d_model: int = 512
    n_heads: int = 8
    encoder_layers: int = 6
    decoder_layers: int = 6
    ff_dim: int = 2048
    dropout: float = 0.1
    attention_dropout: float | None = None
    """Dropout of the attention weights; ``None`` = :attr:`dropout`. At 0 the attention runs in
    torch's fused kernel on a CPU too, without materialising the weights (the demo's setting: on
    CPU, attention-weight dropout cost a quarter of a training step)."""
    max_source_len: int = 2048
    max_target_len: int = 2048
    max_image_rows: int | None = None
    """Rows of the image row-position table; ``None`` = the vocabulary's ``max_image_height``."""
    subdecoder_heads: int = 8
    subdecoder_layers: int = 1
    subdecoder_ff_dim: int | None = None
    """``None`` = ``ff_dim``."""
    image_code_dim: int = 0
    """Width of the image codebook-vector table (0 = none); set by ``init_codebook_embeddings``."""
    audio_code_dim: int = 0
    """Width of the audio codebook-vector table (0 = none); set by ``init_codebook_embeddings``."""
    head_dim: int | None = None
    """Width of an attention head; ``None`` = ``d_model / n_heads``. Models imported from U-MusT
    (x-transformers) have 64, so their attention is ``n_heads * 64`` wide whatever ``d_model``."""
    subdecoder_head_dim: int | None = None
    """The sub-decoder's head width; ``None`` = ``d_model / subdecoder_heads``."""
    separate_embeddings: bool = False
    """Three id tables: the encoder input's, the decoder input's and the one the sub-decoder adds to
    the decoder state for the codebooks chosen so far (U-MusT's layout). One shared table when False."""
    decoder_final_norms: int = 1
    """LayerNorms after the last decoder block: 2 in U-MusT (x-transformers' final norm, then its own)."""
    positions: str = "umt"
    """Position rules: ``"umt"`` (:mod:`umt.models.positions`) or ``"umust"`` (U-MusT's: a sequence's
    first row, image EOS rows of targets and the rows after them get no position embedding; image
    height and EOS rows of sources take the next column's first row; a target image's SEP repeats
    the last code's position)."""
    source_height_rows: bool = True
    """False: the height rows of a source image are not attended to (U-MusT's encoder reads images
    without height tokens; the positions of the other rows still come from them)."""
    source_systems: str = "umt"
    """How a source image of several systems is laid out: ``"umt"``, each system with its own height
    (:func:`umt.tokenizers.image.flatten_systems`), or ``"umust"``, every system padded below to
    the tallest with a fill row, as U-MusT reads them (:mod:`umt.models.source_layout`; needs
    ``separate_embeddings``, whose source table gets the fill row)."""
    source_columns: bool = False
    """True: each code column of a source image enters the encoder as one position, its rows'
    embeddings (id + 2-D position) side by side in ``max_image_rows`` slots, projected to ``d``
    (:meth:`Translator.read_columns`); the other rows keep a position each. The encoder then reads
    a system's ``h`` times fewer positions, and the decoder looks along the score from left to right."""
    stop_at_midi_eos: bool = True
    """False reproduces U-MusT, whose MIDI outputs never end on EOS (their EOS row pads codebooks
    1.. with an id their output masks forbid there): generation then runs to ``max_len``."""

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "ff_dim", "max_source_len", "max_target_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"TranslatorConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("encoder_layers", "decoder_layers", "subdecoder_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"TranslatorConfig.{name} must be >= 0, got {getattr(self, name)}")
        for heads, head_dim in (
            (self.n_heads, self.head_dim),
            (self.subdecoder_heads, self.subdecoder_head_dim),
        ):
            if head_dim is None and self.d_model % heads:
                raise ValueError(f"TranslatorConfig: d_model={self.d_model} not divisible by {heads} heads")
            if head_dim is not None and head_dim < 1:
                raise ValueError(f"TranslatorConfig: head widths must be >= 1, got {head_dim}")
        if self.decoder_final_norms not in (1, 2):
            raise ValueError(
                f"TranslatorConfig.decoder_final_norms must be 1 or 2, got {self.decoder_final_norms}"
            )
        if self.positions not in POSITION_RULES:
            raise ValueError(
                f"TranslatorConfig.positions must be one of {POSITION_RULES}, got {self.positions!r}"
            )
        if self.source_systems not in ("umt", "umust"):
            raise ValueError(
                f"TranslatorConfig.source_systems must be 'umt' or 'umust', got {self.source_systems!r}"
            )
        if self.source_columns and self.source_systems != "umt":
            raise ValueError("TranslatorConfig.source_columns needs source_systems='umt'")
        if self.source_systems == "umust" and not self.separate_embeddings:
            raise ValueError(
                "TranslatorConfig.source_systems='umust' needs separate_embeddings (the fill row)"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"TranslatorConfig.{name} must be in [0, 1), got {value}")

    @classmethod
    def tiny(cls, **overrides: Any) -> TranslatorConfig:
        """A small model for tests and CPU smoke runs (Hydra's ``model=tiny``)."""
        values = dict(
            d_model=32,
            n_heads=2,
            encoder_layers=1,
            decoder_layers=1,
            ff_dim=64,
            max_source_len=256,
            max_target_len=256,
            subdecoder_heads=2,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def paper(cls, **overrides: Any) -> TranslatorConfig:
        """The paper's size: 12 + 12 layers, width 1024, 16 heads, feed-forward 4096, a sub-decoder
        with 8 heads (U-MusT README "Model at a glance"; its config/nn_params/mm_translator.yaml,
        encoder_params/mm_encoder.yaml and decoder_params/mm_decoder.yaml). Hydra's ``model=paper``."""
        values = dict(d_model=1024, n_heads=16, encoder_layers=12, decoder_layers=12, ff_dim=4096)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CodebookVectors(nn.Module):
    """A modality's codebook vectors ``[codes, dim]`` (all codebooks stacked) and ``Linear(dim, d)``."""

    def __init__(self, num_codes: int, dim: int, d_model: int) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.zeros(num_codes, dim))
        self.project = nn.Linear(dim, d_model)


class Translator(nn.Module):
    """Encoder-decoder over unified-vocabulary rows with a codebook sub-decoder."""

    def __init__(self, config: TranslatorConfig, vocab: Vocabulary) -> None:
        super().__init__()
        max_rows = config.max_image_rows or vocab.config.max_image_height
        if max_rows < vocab.config.max_image_height:
            raise ValueError(
                f"max_image_rows={max_rows} is below the vocabulary's max_image_height "
                f"{vocab.config.max_image_height}"
            )
        self.config = config
        self.vocab = vocab
        self.num_codebooks = vocab.num_codebooks
        self.vocab_size = vocab.size
        d = config.d_model
        self.token_embedding = nn.Embedding(vocab.size, d, padding_idx=PAD_ID)
        self.fill_id = vocab.size
        """The fill row's id in U-MusT's multi-system layout (one past the vocabulary)."""
        if config.separate_embeddings:
            fill_rows = 1 if config.source_systems == "umust" else 0
            self.source_embedding = nn.Embedding(vocab.size + fill_rows, d, padding_idx=PAD_ID)
            self.subdecoder_embedding = nn.Embedding(vocab.size, d)
        self.codebook_vectors = nn.ModuleDict()
        for modality in sorted(m for m in vocab.modalities if vocab.spec(m).multi_stream):
            dim = getattr(config, f"{modality}_code_dim", 0)
            if dim:
                self.codebook_vectors[modality] = CodebookVectors(self._code_count(modality), dim, d)
        self.target_modality_embedding = nn.Embedding(len(vocab.modalities), d)
        umust = config.positions == "umust"
        self.source_positions = ModalityPositions(
            vocab, config.max_source_len, max_rows, d, "umust-source" if umust else "umt"
        )
        self.target_positions = ModalityPositions(
            vocab, config.max_target_len, max_rows, d, "umust-target" if umust else "umt"
        )
        if config.source_columns:
            self.source_column_projection = nn.Linear(max_rows * d, d)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(
            EncoderLayer(
                d, config.n_heads, config.ff_dim, config.dropout, config.attention_dropout, config.head_dim
            )
            for _ in range(config.encoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(
            DecoderLayer(
                d, config.n_heads, config.ff_dim, config.dropout, config.attention_dropout, config.head_dim
            )
            for _ in range(config.decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d)
        if config.decoder_final_norms == 2:
            self.decoder_second_norm = nn.LayerNorm(d)
        self.subdecoder = CodebookSubDecoder(
            vocab.num_codebooks,
            d,
            config.subdecoder_heads,
            config.subdecoder_ff_dim or config.ff_dim,
            config.subdecoder_layers,
            config.dropout,
            config.subdecoder_head_dim,
        )
        self.head = nn.Linear(d, vocab.size)

        modalities = vocab.modalities
        allowed = torch.stack([torch.from_numpy(vocab.allowed_mask(m)) for m in modalities])  # [M, K, V]
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("counted_codebooks", allowed.sum(-1) > 1, persistent=False)  # [M, K]
        # The output projection is evaluated only on the ids allowed for (modality, codebook):
        # ~1k of the ~11k ids for a codebook, which makes the K-slot head cheap.
        local_index = torch.full(allowed.shape, -1, dtype=torch.long)
        for m in range(len(vocab.modalities)):
            for k in range(vocab.num_codebooks):
                ids = allowed[m, k].nonzero()[:, 0]
                self.register_buffer(f"allowed_ids_{m}_{k}", ids, persistent=False)
                local_index[m, k, ids] = torch.arange(len(ids))
        self.register_buffer("local_index", local_index, persistent=False)  # [M, K, V] -> position in ids
        self.register_buffer("special_ids", torch.from_numpy(vocab.special_mask), persistent=False)  # [V]
        sos = torch.tensor([vocab.sos(m) for m in modalities])
        self.register_buffer("sos_ids", sos, persistent=False)  # [M]
        self.register_buffer("eos_ids", torch.tensor([vocab.eos(m) for m in modalities]), persistent=False)
        stops = [config.stop_at_midi_eos or m != "midi" for m in modalities]
        self.register_buffer("stops_at_eos", torch.tensor(stops), persistent=False)  # [M]
        height = vocab["image/height"] if "image" in modalities else None
        is_height = torch.zeros(vocab.size + 1, dtype=torch.bool)  # + the fill id
        if height is not None:
            is_height[height.start : height.stop] = True
        self.register_buffer("is_height", is_height, persistent=False)  # [V + 1]
        modality_of_sos = torch.full((vocab.size,), -1, dtype=torch.long)
        modality_of_sos[sos] = torch.arange(len(sos))
        self.register_buffer("modality_of_sos", modality_of_sos, persistent=False)  # [V], -1: not a SOS
        self.reset_parameters()

    # ---------------------------------------------------------------- set-up
    def _code_count(self, modality: str) -> int:
        return sum(
            self.vocab.codebook_range(modality, k).size
            for k in range(self.vocab.modality_codebooks(modality))
        )

    def reset_parameters(self) -> None:
        """GPT-style init: N(0, 0.02) weights, zero biases, unit LayerNorms, PAD embedding 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Residual output projections scaled down with depth (GPT-2).
        scale = 0.02 / math.sqrt(2 * max(1, self.config.encoder_layers + self.config.decoder_layers))
        for name, parameter in self.named_parameters():
            if name.endswith(("attn.out.weight", "ff.down.weight")):
                nn.init.normal_(parameter, std=scale)
        with torch.no_grad():
            self.token_embedding.weight[PAD_ID].zero_()
            if self.config.separate_embeddings:
                self.source_embedding.weight[PAD_ID].zero_()

    @torch.no_grad()
    def init_codebook_embeddings(self, modality: str, codebook_vectors: list[Tensor]) -> None:
        """Initialise the ``modality`` code embeddings from the tokenizer's codebooks.

        ``codebook_vectors``: one ``[codebook_size, dim]`` tensor per codebook the modality uses
        (RQ-VAE code vectors for images; DAC out-projection times codebook for audio). The embedding
        of code id ``i`` becomes ``Linear(dim, d)(vectors[i])`` (vectors and projection are learned
        from there on); the shared table rows of those ids are zeroed and keep learning a residual.
        Creates the table (and records ``<modality>_code_dim`` in :attr:`config`) if needed.
        """
        if not self.vocab.spec(modality).multi_stream:
            raise ValueError(f"{modality} is single-stream: it has no codebooks")
        num = self.vocab.modality_codebooks(modality)
        if len(codebook_vectors) != num:
            raise ValueError(f"{modality} uses {num} codebooks, got {len(codebook_vectors)} vector tables")
        dims = {tuple(v.shape[1:]) for v in codebook_vectors}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ValueError(
                "codebook vectors must all be [codebook_size, dim], got "
                f"{[tuple(v.shape) for v in codebook_vectors]}"
            )
        for k, vectors in enumerate(codebook_vectors):
            size = self.vocab.codebook_range(modality, k).size
            if vectors.shape[0] != size:
                raise ValueError(f"{modality} codebook {k} has {size} codes, got {vectors.shape[0]} vectors")
        stacked = torch.cat([v.detach().float() for v in codebook_vectors])
        dim = stacked.shape[1]
        current = getattr(self.config, f"{modality}_code_dim")
        if modality not in self.codebook_vectors or current != dim:
            reference = self.token_embedding.weight
            table = CodebookVectors(stacked.shape[0], dim, self.config.d_model)
            self.codebook_vectors[modality] = table.to(device=reference.device, dtype=reference.dtype)
            self.config = replace(self.config, **{f"{modality}_code_dim": dim})
        table = self.codebook_vectors[modality]
        # Standardise the vectors so the projected embeddings start at the scale of the others.
        normalised = (stacked - stacked.mean(0)) / stacked.std().clamp_min(1e-8)
        table.vectors.copy_(normalised)
        nn.init.normal_(table.project.weight, std=0.02 / math.sqrt(1.0))
        nn.init.zeros_(table.project.bias)
        start = self.vocab.codebook_range(modality, 0).start
        self.token_embedding.weight[start : start + stacked.shape[0]].zero_()

    # ------------------------------------------------------------- embedding
    def embed_ids(self, ids: Tensor) -> Tensor:
        """Ids ``[...]`` -> embeddings ``[..., d]`` (shared table plus projected code vectors)."""
        out = self.token_embedding(ids)
        for modality, table in self.codebook_vectors.items():
            start = self.vocab.codebook_range(modality, 0).start
            inside = (ids >= start) & (ids < start + table.vectors.shape[0])
            if bool(inside.any()):
                projected = table.project(table.vectors[ids[inside] - start])
                out = out.index_put((inside,), projected, accumulate=True)
        return out

    def embedding_table(self) -> Tensor:
        """Every id's embedding ``[V, d]``: the shared table plus the projected code vectors.

        :meth:`embed_ids` as one lookup table, for generation: a decoding step then embeds its ids
        with one gather instead of a range test and a projection per codebook-vector table.
        """
        if not self.codebook_vectors:
            return self.token_embedding.weight
        table = self.token_embedding.weight.clone()
        for modality, vectors in self.codebook_vectors.items():
            start = self.vocab.codebook_range(modality, 0).start
            rows = slice(start, start + vectors.vectors.shape[0])
            table[rows] = table[rows] + vectors.project(vectors.vectors)
        return table

    def embed_rows(self, rows: Tensor) -> Tensor:
        """Rows ``[B, L, K]`` -> the sum of their id embeddings ``[B, L, d]``."""
        return self.embed_ids(rows).sum(dim=-2)

    def embed_source_rows(self, rows: Tensor) -> Tensor:
        """Source rows ``[B, S, K]`` -> ``[B, S, d]`` (the encoder's own table when separate)."""
        if self.config.separate_embeddings:
            return self.source_embedding(rows).sum(dim=-2)
        return self.embed_rows(rows)

    def subdecoder_table(self, table: Tensor) -> Tensor:
        """The ``[V, d]`` table of the ids the sub-decoder adds to the decoder state (``table``, the
        :meth:`embedding_table`, when shared)."""
        return self.subdecoder_embedding.weight if self.config.separate_embeddings else table

    def embed_previous(self, ids: Tensor) -> Tensor:
        """The chosen codebooks' ids ``[..., k]`` -> the sub-decoder's inputs ``[..., k, d]``."""
        if ids.shape[-1] == 0:
            # Single-stream targets: nothing to look up, and no [V, d] gradient to zero-fill for it.
            return self.token_embedding.weight.new_zeros(*ids.shape, self.config.d_model)
        if self.config.separate_embeddings:
            return self.subdecoder_embedding(ids)
        return self.embed_ids(ids)

    def prepare_source(self, src: Tensor, src_mask: Tensor, src_modality: Tensor) -> tuple[Tensor, Tensor]:
        """The rows the encoder reads and the mask of those it attends to: images of several systems
        laid out as U-MusT does when :attr:`TranslatorConfig.source_systems` is ``"umust"``
        (:mod:`umt.models.source_layout`), then :meth:`source_mask`."""
        if self.config.source_systems == "umust" and "image" in self.vocab.modalities:
            is_image = src_modality == self.vocab.modality_index("image")
            src, src_mask = pad_systems_to_tallest(src, src_mask, is_image, self.vocab, self.fill_id)
        return src, self.source_mask(src, src_mask, src_modality)

    def source_mask(self, src: Tensor, src_mask: Tensor, src_modality: Tensor) -> Tensor:
        """The source rows attended to ``[B, S]``: ``src_mask`` less the image height rows when
        :attr:`TranslatorConfig.source_height_rows` is off."""
        if self.config.source_height_rows or "image" not in self.vocab.modalities:
            return src_mask
        image = src_modality == self.vocab.modality_index("image")
        return src_mask & ~(self.is_height[src[..., 0]] & image[:, None])

    def _final_norms(self, x: Tensor) -> Tensor:
        x = self.decoder_norm(x)
        return self.decoder_second_norm(x) if self.config.decoder_final_norms == 2 else x

    def source_modality_of(self, src: Tensor) -> Tensor:
        """Modality indices ``[B]`` read from the SOS id in ``src[:, 0, 0]``."""
        index = self.modality_of_sos[src[:, 0, 0]]
        if bool((index < 0).any()):
            raise ValueError(
                "src[:, 0, 0] must be a SOS id (vocab.sos(modality)) to infer the source modality"
            )
        return index

    # ------------------------------------------------------------ main parts
    def encode(
        self, src: Tensor, src_mask: Tensor, src_modality: Tensor, tgt_modality: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``src [B, S, K]``, ``src_mask [B, S]`` (the rows attended to) -> memory ``[B, S', d]`` and
        its mask ``[B, S']``: ``S' = S`` and the mask ``src_mask`` unless
        :attr:`TranslatorConfig.source_columns`."""
        x = self.embed_source_rows(src) + self.source_positions(src[..., 0], src_modality)
        if self.config.source_columns:
            x, src_mask = self.read_columns(x, src[..., 0], src_mask, src_modality)
        x = self.embedding_dropout(x + self.target_modality_embedding(tgt_modality)[:, None])
        attn_mask = src_mask[:, None, None, :]
        for layer in self.encoder:
            x = layer(x, attn_mask)
        return self.encoder_norm(x), src_mask

    def read_columns(
        self, x: Tensor, first_ids: Tensor, src_mask: Tensor, src_modality: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Embedded source rows ``x [B, S, d]`` -> one position per image code column ``[B, S', d]``
        and the mask of the positions ``[B, S']`` (:func:`column_groups`). A column is
        ``Linear(max_rows * d, d)`` of its rows' embeddings, each in the slot of its row (zeros below
        the system's height); rows of their own (special rows, non-image sources) pass as they are."""
        positions = self.source_positions
        rows, _ = image_positions(
            first_ids, positions.height_start, positions.height_stop, positions.max_rows
        )
        is_image = src_modality == positions.image_index
        in_column = src_mask & is_image[:, None] & (rows < positions.max_rows)  # max_rows: special rows
        group, slot, is_column, group_mask = column_groups(rows, src_mask, in_column)
        batch = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(group)
        alone = src_mask & ~in_column
        out = x.new_zeros(*group_mask.shape, x.shape[-1])
        out = out.index_put((batch[alone], group[alone]), x[alone])
        if bool(is_column.any()):
            column_index = torch.cumsum(is_column.flatten(), 0).view_as(is_column) - 1  # [B, S']
            target = column_index[batch[in_column], group[in_column]]
            grid = x.new_zeros(int(is_column.sum()), positions.max_rows, x.shape[-1])
            grid = grid.index_put((target, slot[in_column]), x[in_column])
            out = out.masked_scatter(is_column[..., None], self.source_column_projection(grid.flatten(1)))
        return out, group_mask

    def _memory_kv(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [layer.cross_attn.project_memory(memory) for layer in self.decoder]

    def _decode(
        self,
        rows: Tensor,
        first_ids: Tensor,
        tgt_modality: Tensor,
        memory: Tensor | list[tuple[Tensor, Tensor]],
        memory_mask: Tensor,
        caches: list[KVCache] | None = None,
        position: int = 0,
    ) -> Tensor:
        """Decoder states ``[B, L, d]`` for target ``rows [B, L, K]`` at positions ``position..``.

        ``first_ids [B, position + L]`` are the codebook-0 ids of the whole prefix (image positions
        depend on the height tokens before). ``memory``: the encoder output ``[B, S, d]`` (each
        layer projects it) or every layer's memory keys and values (:meth:`_memory_kv`).
        """
        x = self.embed_rows(rows) + self.target_positions(first_ids, tgt_modality, start=position)
        x = self.embedding_dropout(x)
        for index, layer in enumerate(self.decoder):
            cache = caches[index] if caches is not None else None
            x = layer(
                x, memory if isinstance(memory, Tensor) else memory[index], memory_mask, cache, position
            )
        return self._final_norms(x)

    def _decode_step(
        self,
        rows: Tensor,
        first_ids: Tensor,
        tgt_modality: Tensor,
        memory_kv: list[tuple[Tensor, Tensor]],
        memory_mask: Tensor,
        caches: list[KVCache],
        table: Tensor,
    ) -> Tensor:
        """Cached decoder state ``[B, d]`` of the last target position, in eval mode.

        ``rows [B, K]`` at position ``P - 1``, ``first_ids [B, P]`` the codebook-0 ids of the prefix
        up to it, ``table [V, d]`` the :meth:`embedding_table`. The values of
        ``_decode(rows[:, None], first_ids, ..., caches, P - 1)[:, -1]`` without dropout calls and
        ``[B, 1, d]`` reshapes (the per-step hot path).
        """
        position = first_ids.shape[1] - 1
        x = (
            F.embedding(rows, table).sum(dim=1)
            + self.target_positions(first_ids, tgt_modality, start=position)[:, 0]
        )
        for layer, memory, cache in zip(self.decoder, memory_kv, caches):
            x = layer.step(x, memory, memory_mask, cache, position)
        return self._final_norms(x)

    def _restricted_head(self, states: Tensor, modality: int, codebook: int) -> Tensor:
        """Logits ``[N, A]`` over the ``A`` ids allowed for (``modality``, ``codebook``), in id order."""
        ids = getattr(self, f"allowed_ids_{modality}_{codebook}")
        return F.linear(states, self.head.weight[ids], self.head.bias[ids])

    def _mask_logits(self, logits: Tensor, allowed: Tensor) -> Tensor:
        return logits.masked_fill(~allowed, float("-inf"))

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        tgt: Tensor,
        tgt_mask: Tensor,
        tgt_modality: Tensor,
        src_modality: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``[B, T-1, K, V]`` predicting ``tgt[:, 1:]``.

        ``src [B, S, K]``, ``src_mask [B, S]`` (True = real row), ``tgt [B, T, K]`` (SOS row first,
        then the rows and EOS, right-padded), ``tgt_mask [B, T]``, ``tgt_modality [B]``; the source
        modality comes from ``src_modality [B]`` or, when ``None``, from the SOS id in ``src[:, 0, 0]``.
        The decoder is causal; padding is assumed to be on the right, so ``tgt_mask`` matters only
        for the loss.
        """
        del tgt_mask  # right padding: causal attention never lets a real row see a padded one
        hidden = self._teacher_forced_states(src, src_mask, tgt, tgt_modality, src_modality)
        batch, steps, width = hidden.shape
        target = tgt[:, 1:]
        previous = self.embed_previous(target[..., : self.num_codebooks - 1])  # teacher forcing
        slots = self.subdecoder(hidden.reshape(-1, width), previous.reshape(batch * steps, -1, width))
        logits = self.head(slots).view(batch, steps, self.num_codebooks, self.vocab_size)
        return self._mask_logits(logits, self.allowed[tgt_modality][:, None])

    def _teacher_forced_states(
        self, src: Tensor, src_mask: Tensor, tgt: Tensor, tgt_modality: Tensor, src_modality: Tensor | None
    ) -> Tensor:
        """Decoder states ``[B, T-1, d]`` for the inputs ``tgt[:, :-1]``."""
        if src_modality is None:
            src_modality = self.source_modality_of(src)
        src, src_mask = self.prepare_source(src, src_mask, src_modality)
        memory, memory_mask = self.encode(src, src_mask, src_modality, tgt_modality)
        decoder_in = tgt[:, :-1]
        return self._decode(
            decoder_in, decoder_in[..., 0], tgt_modality, memory, memory_mask[:, None, None, :]
        )

    def counted_targets(self, tgt_mask: Tensor, tgt_modality: Tensor) -> Tensor:
        """The (row, codebook) targets :meth:`loss` counts ``[B, T-1, K]``: the real rows after SOS
        of ``tgt_mask [B, T]``, in the codebooks their modality predicts."""
        return tgt_mask[:, 1:, None] & self.counted_codebooks[tgt_modality][:, None]

    def loss(self, batch: dict[str, Tensor], average: str = "token") -> tuple[Tensor, dict[str, Tensor]]:
        """Mean cross-entropy over counted (row, codebook) targets and metrics.

        ``batch``: ``src``, ``src_mask``, ``tgt``, ``tgt_mask``, ``tgt_modality`` and optionally
        ``src_modality``. ``average``: ``"token"`` (the mean over every counted target of the
        batch) or ``"example"`` (each example's mean over its counted targets, then the mean over
        the examples that have any, like fairseq's ``--sentence-avg``): with ``"token"`` a task
        weighs in by its share of target tokens (an audio target, ``K`` codebooks of hundreds of
        rows, outweighs an LMX one many times), with ``"example"`` by its share of examples, i.e.
        the mixture's rates. Metrics: ``loss/cb{k}``, ``acc/cb{k}`` (per codebook, over counted
        targets; 0 when the batch has none), ``acc`` (all counted targets), ``acc/row`` (real rows
        with every counted codebook right).

        Same values as cross-entropy on :meth:`forward`'s logits, but cheaper: the sub-decoder runs
        only over real rows and up to the last codebook any target uses (it is causal over the
        slots), and the output projection only where a target is counted.
        """
        if average not in LOSS_AVERAGES:
            raise ValueError(f"average must be one of {LOSS_AVERAGES}, got {average!r}")
        tgt, tgt_mask, tgt_modality = batch["tgt"], batch["tgt_mask"], batch["tgt_modality"]
        hidden = self._teacher_forced_states(
            batch["src"], batch["src_mask"], tgt, tgt_modality, batch.get("src_modality")
        )
        target = tgt[:, 1:]
        real_rows = tgt_mask[:, 1:]
        counted = self.counted_targets(tgt_mask, tgt_modality)  # [B, T-1, K]
        used_slots = int(counted.any(dim=(0, 1)).nonzero().max().item()) + 1 if bool(counted.any()) else 1
        row_modality = tgt_modality[:, None].expand_as(real_rows)[real_rows]  # [N]
        states = hidden[real_rows]  # [N, d]
        row_targets = target[real_rows]  # [N, K]
        row_counted = counted[real_rows][:, :used_slots]  # [N, used]
        previous = self.embed_previous(row_targets[:, : used_slots - 1])  # [N, used-1, d]
        slots = self.subdecoder(states, previous)  # [N, used, d]
        codebook = torch.arange(used_slots, device=tgt.device).expand_as(row_counted)[row_counted]  # [M]
        element_modality = row_modality[:, None].expand_as(row_counted)[row_counted]
        labels = row_targets[:, :used_slots][row_counted]
        element_states = slots[row_counted]  # [M, d]
        group = element_modality * self.num_codebooks + codebook
        token_loss, correct, members = self._restricted_cross_entropy(element_states, labels, group, slots)
        total = max(labels.numel(), 1)
        if average == "token" or not members.numel():
            loss = token_loss.sum() / total
        else:
            examples = torch.arange(tgt.shape[0], device=tgt.device)[:, None].expand_as(real_rows)[real_rows]
            element_example = examples[:, None].expand_as(row_counted)[row_counted][members]  # [M]
            sums = token_loss.new_zeros(tgt.shape[0]).index_add(0, element_example, token_loss)
            counts = torch.zeros_like(sums).index_add_(0, element_example, torch.ones_like(token_loss))
            present = counts > 0
            loss = (sums[present] / counts[present]).mean()
        with torch.no_grad():
            correct = torch.zeros_like(labels, dtype=torch.bool).index_put_((members,), correct)
            metrics = self._loss_metrics(token_loss.detach(), correct, codebook, members, row_counted)
        return loss, metrics

    def _restricted_cross_entropy(
        self, states: Tensor, labels: Tensor, group: Tensor, slots: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Cross-entropy of each counted target over the ids allowed for its (modality, codebook).

        ``states [M, d]``, ``labels [M]`` (ids), ``group [M]`` (``modality * K + codebook``);
        ``slots`` gives a graph to a zero loss when there is nothing to predict. Returns per-target
        losses and hits ``[M']`` and ``members [M']``, the target index of each, group by group.
        """
        losses, corrects, order = [], [], []
        for key in torch.unique(group).tolist():
            modality, k = divmod(key, self.num_codebooks)
            members = (group == key).nonzero()[:, 0]
            local_labels = self.local_index[modality, k, labels[members]]
            if bool((local_labels < 0).any()):
                raise ValueError(
                    f"a {self.vocab.modalities[modality]} target holds an id not allowed in codebook {k} "
                    f"(ids {sorted(set(labels[members][local_labels < 0].tolist()))[:5]})"
                )
            logits = _at_least_float32(self._restricted_head(states[members], modality, k))
            losses.append(F.cross_entropy(logits, local_labels, reduction="none"))
            corrects.append(logits.argmax(-1) == local_labels)
            order.append(members)
        if not losses:  # nothing to predict (targets of SOS only): a zero loss that still has a graph
            return slots.sum()[None] * 0, labels.new_zeros(0, dtype=torch.bool), labels[:0]
        return torch.cat(losses), torch.cat(corrects), torch.cat(order)

    def _loss_metrics(
        self, token_loss: Tensor, correct: Tensor, codebook: Tensor, members: Tensor, row_counted: Tensor
    ) -> dict[str, Tensor]:
        """``loss/cb{k}``, ``acc/cb{k}``, ``acc`` and ``acc/row`` (see :meth:`loss`); ``correct [M]``
        and ``codebook [M]`` in target order, ``token_loss`` in the order of ``members``."""
        total = max(correct.numel(), 1)
        count = token_loss.new_zeros(self.num_codebooks).index_add_(
            0, codebook, torch.ones_like(codebook, dtype=token_loss.dtype)
        )
        loss_sum = torch.zeros_like(count).index_add_(0, codebook[members], token_loss[: members.numel()])
        right_sum = torch.zeros_like(count).index_add_(0, codebook, correct.to(count.dtype))
        metrics: dict[str, Tensor] = {}
        for k in range(self.num_codebooks):
            metrics[f"loss/cb{k}"] = loss_sum[k] / count[k].clamp_min(1.0)
            metrics[f"acc/cb{k}"] = right_sum[k] / count[k].clamp_min(1.0)
        metrics["acc"] = correct.float().sum() / total
        wrong = torch.zeros_like(row_counted)
        wrong[row_counted] = ~correct
        metrics["acc/row"] = (~wrong.any(-1)).float().mean() if wrong.numel() else count.new_zeros(())
        return metrics

    # ------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        src: Tensor,
        src_mask: Tensor,
        src_modality: Tensor | None,
        tgt_modality: Tensor,
        max_len: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        repetition_penalty: float = 1.0,
        filters: Sequence[LogitFilter] | None = None,
        guidance_scale: float = 1.0,
        unconditional: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Autoregressive translation -> rows ``[B, T, K]`` with ``T <= max_len``.

        Row 0 is the target SOS; each example stops at the target modality's EOS (rows after it
        are PAD); ``T`` is cut to the longest output. ``temperature == 0`` is greedy; otherwise
        sampling with optional top-k / nucleus (top-p) filtering from ``generator``. Codebooks are
        sampled one after another through the sub-decoder; ids are restricted to those allowed for
        the target modality and codebook, and in image/audio targets codebooks ``1..`` are PAD
        exactly when codebook 0 is a special id (EOS, SEP, height). Call in eval mode for
        deterministic decoding (dropout is not switched off here). ``use_cache=False`` recomputes
        the whole prefix each step (reference for tests). In eval mode the cached path runs the
        one-position ``step`` methods of the blocks (same values, fewer ops per step).
        ``filters``: a :mod:`umt.generation.filters` chain to use instead of the one
        ``temperature``, ``top_k``, ``top_p`` and ``repetition_penalty`` make.
        ``guidance_scale`` other than 1 is classifier-free guidance (Ho and Salimans, 2022): the
        batch runs also on ``unconditional`` (its sources ``[B, S', K]`` and mask, e.g. empty
        prompts, the condition a model trained with dropped conditions saw), and every codebook's
        logits become ``u + s (c - u)`` before choosing; both halves then take the same ids.
        """
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (SOS and one more row), got {max_len}")
        if max_len > self.config.max_target_len:
            raise ValueError(f"max_len={max_len} exceeds max_target_len={self.config.max_target_len}")
        if src_modality is None:
            src_modality = self.source_modality_of(src)
        guided = guidance_scale != 1.0
        if guided:
            if unconditional is None or unconditional[0].shape[0] != src.shape[0]:
                raise ValueError("classifier-free guidance needs an unconditional source per example")
            if len(torch.unique(tgt_modality)) != 1:
                raise ValueError("classifier-free guidance needs one target modality per batch")
            src, src_mask = _stacked_sources((src, src_mask), unconditional)
            src_modality, tgt_modality = src_modality.repeat(2), tgt_modality.repeat(2)
        batch = src.shape[0]
        src, src_mask = self.prepare_source(src, src_mask, src_modality)
        memory, memory_mask = self.encode(src, src_mask, src_modality, tgt_modality)
        memory_kv = self._memory_kv(memory)
        memory_mask = memory_mask[:, None, None, :]
        out = torch.full((batch, max_len, self.num_codebooks), PAD_ID, dtype=torch.long, device=src.device)
        out[:, 0, 0] = self.sos_ids[tgt_modality]
        eos = self.eos_ids[tgt_modality]
        stops = self.stops_at_eos[tgt_modality]
        done = torch.zeros(batch, dtype=torch.bool, device=src.device)
        caches = None
        if use_cache:
            head_dim = self.config.head_dim or self.config.d_model // self.config.n_heads
            caches = [
                KVCache.empty(batch, self.config.n_heads, max_len, head_dim, memory) for _ in self.decoder
            ]
        multi_stream = self.counted_codebooks[tgt_modality]  # [B, K]
        # Codebooks no target in the batch uses stay PAD (the sub-decoder is causal over slots).
        used_slots = int(multi_stream.any(0).nonzero().max().item()) + 1 if bool(multi_stream.any()) else 1
        groups = [(m, (tgt_modality == m).nonzero()[:, 0]) for m in torch.unique(tgt_modality).tolist()]
        # Gathered once per call, not once per step and codebook.
        heads = {(m, k): self._slot_head(m, k) for m, _ in groups for k in range(used_slots)}
        table = self.embedding_table()
        previous_table = self.subdecoder_table(table)
        # Greedy without filters takes the argmax over the allowed ids directly (the fast path).
        chain = None
        if filters is not None or temperature != 0 or repetition_penalty != 1.0:
            chain = (
                list(filters)
                if filters is not None
                else sampling_filters(temperature, top_k, top_p, repetition_penalty)
            )
        last = 0
        for step in range(max_len - 1):
            hidden = self._next_state(
                out[:, : step + 1], tgt_modality, (memory_kv, memory_mask), caches, table
            )
            row = self._sample_row(
                hidden,
                heads,
                groups,
                used_slots,
                (chain, temperature == 0, generator, out[:, : step + 1]),
                use_cache,
                previous_table,
                guidance_scale if guided else None,
            )
            row = torch.where(done[:, None], PAD_ID, row)
            out[:, step + 1] = row
            last = step + 1
            done = done | ((row[:, 0] == eos) & stops)
            if bool(done.all()):
                break
        return out[: batch // 2 if guided else batch, : last + 1]

    def _next_state(
        self,
        prefix: Tensor,
        tgt_modality: Tensor,
        memory: tuple[Any, Tensor],
        caches: list[KVCache] | None,
        table: Tensor,
    ) -> Tensor:
        """The decoder state ``[B, d]`` after the rows ``prefix [B, t, K]`` generated so far: in eval
        mode with a cache the one-position step path; with a cache in training mode (dropout) the
        module path on the last row; without a cache the whole prefix again (the tests' reference)."""
        memory_kv, memory_mask = memory
        step = prefix.shape[1] - 1
        first_ids = prefix[..., 0]
        if caches is not None and not self.training:
            return self._decode_step(
                prefix[:, -1], first_ids, tgt_modality, memory_kv, memory_mask, caches, table
            )
        if caches is not None:
            hidden = self._decode(
                prefix[:, -1:], first_ids, tgt_modality, memory_kv, memory_mask, caches, step
            )
        else:
            hidden = self._decode(prefix, first_ids, tgt_modality, memory_kv, memory_mask)
        return hidden[:, -1]

    def _slot_head(self, modality: int, codebook: int) -> _SlotHead:
        """The output projection of slot ``codebook`` for ``modality`` targets, on its allowed ids."""
        ids = getattr(self, f"allowed_ids_{modality}_{codebook}")
        bias = self.head.bias[ids]
        structural = codebook > 0 and bool(self.counted_codebooks[modality, codebook])
        if structural:
            # Image/audio: codebooks 1.. are PAD after a special codebook-0 id, codes otherwise.
            pad = ids == PAD_ID
            bias = torch.stack([bias.masked_fill(pad, float("-inf")), bias.masked_fill(~pad, float("-inf"))])
        else:
            bias = bias[None]
        return _SlotHead(ids, self.head.weight[ids], bias, structural)

    def _sample_row(
        self,
        hidden: Tensor,
        heads: dict[tuple[int, int], _SlotHead],
        groups: list[tuple[int, Tensor]],
        used_slots: int,
        choosing: tuple[list[LogitFilter] | None, bool, torch.Generator | None, Tensor],
        use_cache: bool,
        table: Tensor,
        guidance: float | None = None,
    ) -> Tensor:
        """One step's ``K`` ids ``[B, K]`` from decoder states ``hidden [B, d]``, codebook by codebook.

        ``groups``: (target modality, example indices ``[n]``) covering the batch; ``heads``: the
        restricted projection of each (modality, slot); ``table``: :meth:`subdecoder_table`;
        ``choosing``: (filter chain or ``None`` for plain greedy, greedy, generator, the rows so far
        ``[B, t, K]``). Plain greedy decoding takes the argmax over the allowed ids directly (ids
        ascending, so ties resolve as an argmax over all ``V`` would); with a chain the allowed
        logits are scattered into ``[B, V]`` (``-inf`` elsewhere) and filtered first. ``guidance``:
        the batch is a conditional half and an unconditional one (one target modality); each
        codebook's logits are guided (:func:`guided_logits`) and both halves take the ids chosen.
        """
        chain, greedy, generator, history = choosing
        batch = hidden.shape[0]
        row = torch.full((batch, self.num_codebooks), PAD_ID, dtype=torch.long, device=hidden.device)
        caches = self.subdecoder.new_caches(batch, hidden) if use_cache else None
        previous: list[Tensor] = []  # embeddings of the ids chosen so far in this step (uncached path)
        special = hidden.new_zeros(batch, dtype=torch.long)  # 1 where codebook 0 is a special id
        whole = len(groups) == 1  # one target modality: no per-group gathers
        for k in range(used_slots):
            if k > 0:
                embedded = F.embedding(row[:, k - 1], table)
                if k == 1:
                    special = self.special_ids[row[:, 0]].long()
            if caches is not None:
                state = self.subdecoder.step(hidden + embedded if k > 0 else hidden, k, caches)
            else:
                if k > 0:
                    previous.append(embedded)
                stacked = (
                    torch.stack(previous, dim=1) if previous else hidden.new_zeros(batch, 0, hidden.shape[-1])
                )
                state = self.subdecoder(hidden, stacked)[:, k]
            full = None
            if chain is not None:
                full = _at_least_float32(state.new_full((batch, self.vocab_size), float("-inf")))
            for modality, members in groups:
                head = heads[modality, k]
                logits = head.logits(
                    state if whole else state[members], special if whole else special[members]
                )
                if guidance is not None:
                    half = guided_logits(logits[: batch // 2], logits[batch // 2 :], guidance)
                    logits = torch.cat([half, half])
                if full is None:
                    chosen = head.ids[logits.argmax(-1)]
                    if whole:
                        row[:, k] = chosen
                    else:
                        row[members, k] = chosen
                elif whole:
                    full[:, head.ids] = _at_least_float32(logits)
                else:
                    full[members[:, None], head.ids[None, :]] = _at_least_float32(logits)
            if full is not None:
                if guidance is None:
                    row[:, k] = choose(full, chain, history[..., k], greedy, generator)
                else:  # one draw for the pair, not one for each half
                    half = choose(full[: batch // 2], chain, history[: batch // 2, :, k], greedy, generator)
                    row[:, k] = torch.cat([half, half])
        return row


@dataclass
class _SlotHead:
    """The output projection of one (target modality, codebook), restricted to its allowed ids.

    ``bias [R, A]``: ``R = 2`` rows for codebooks ``1..`` of image/audio (``structural``): row 0
    after a content codebook-0 id (PAD barred), row 1 after a special one (only PAD); ``-inf`` bars
    an id. ``R = 1`` otherwise.
    """

    ids: Tensor  # [A] allowed ids, ascending
    weight: Tensor  # [A, d]
    bias: Tensor  # [R, A]
    structural: bool

    def logits(self, states: Tensor, special: Tensor) -> Tensor:
        """``states [N, d]``, ``special [N]`` (0/1) -> logits ``[N, A]``."""
        if self.structural:
            return torch.addmm(self.bias[special], states, self.weight.t())
        return F.linear(states, self.weight, self.bias[0])


def guided_logits(conditional: Tensor, unconditional: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance ``u + scale (c - u)``; ids barred in either stay barred (-inf)."""
    allowed = torch.isfinite(conditional) & torch.isfinite(unconditional)
    mixed = unconditional + scale * (conditional - unconditional)
    return torch.where(allowed, mixed, torch.full_like(mixed, float("-inf")))


def _stacked_sources(
    conditional: tuple[Tensor, Tensor], unconditional: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """Two batches of sources (rows ``[B, S, K]``, mask ``[B, S]``) as one ``[2B, max S, K]``."""
    (a, a_mask), (b, b_mask) = conditional, unconditional
    length = max(a.shape[1], b.shape[1])
    a, b = F.pad(a, (0, 0, 0, length - a.shape[1])), F.pad(b.to(a.device), (0, 0, 0, length - b.shape[1]))
    a_mask = F.pad(a_mask, (0, length - a_mask.shape[1]))
    b_mask = F.pad(b_mask.to(a.device), (0, length - b_mask.shape[1]))
    return torch.cat([a, b]), torch.cat([a_mask, b_mask])


def _at_least_float32(x: Tensor) -> Tensor:
    """Half-precision logits to float32 (softmax / cross-entropy accuracy); float64 stays."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def sample_logits(
    logits: Tensor,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ids ``[N]`` from logits ``[N, V]``: greedy when ``temperature == 0``, else filtered sampling
    (:func:`umt.generation.filters.sampling_filters`)."""
    filters = sampling_filters(temperature, top_k, top_p)
    return choose(logits, filters, greedy=temperature == 0, generator=generator)
