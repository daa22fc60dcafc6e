"""U-MusT's translators as UMT model folders (``umt import-umust``).

U-MusT (MALerLab/U-MusT, ``umust/model_zoo.py`` ``MultimodalTranslator`` on x-transformers 2.28.2)
and UMT's :class:`~umt.models.translator.Translator` compute the same function once UMT's model is
configured as theirs (:func:`translator_config`) and their weights are moved onto UMT's ids:

* **Ids.** Their two id spaces (encoder input, decoder output; :class:`UMustIds`) map onto UMT's
  one by meaning. A UMT row holds one id for a special row (SOS, EOS, SEP, height) and PAD in the
  other codebooks, theirs one id per codebook, and single-stream rows pad with their id 0, whose
  embedding is learned; so a UMT id's input embedding is the *sum* of the embeddings of the ids its
  row holds in their layout (:func:`row_equivalents`). The sub-decoder's table and the output
  projection map id by id: the id a UMT id stands for in codebook 0 (in its own codebook for codes).
* **Blocks.** x-transformers' pre-LN blocks: bias-free LayerNorms that scale by ``gamma + 1`` (its
  ``unit_offset``), bias-free q/k/v and
  output projections (UMT's biases are zero), heads 64 wide, an output projection only when there
  are several heads, and dropouts U-MusT inserts that shift parameter names (``to_out.0``).
* **Positions.** One learned table per side with an offset per modality and (column, row) pairs
  for images; UMT's per-modality tables take its rows (:func:`position_tables`) and
  ``positions="umust"`` reproduces their rules.
* **The rest.** The target-modality embedding in their output order, the decoder's two final norms,
  the sub-decoder's slot positions (x-transformers scales them by ``d ** -0.5``), and their MIDI
  outputs, which never end on EOS (``stop_at_midi_eos=False``).

What they can express and UMT cannot is refused: embedding projections (``token_emb.proj``,
present when a tokenizer's code vectors are narrower than the model) and T5 encoders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from umt.errors import CheckpointError
from umt.interop.umust_run import MODALITY_OF, Block, UMustIds, UMustRun, their_lmx_tokens
from umt.models.translator import Translator, TranslatorConfig
from umt.tasks import TASKS, get_task
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS
from umt.vocab import PAD_ID, VocabConfig, Vocabulary

NEVER = -1.0e4
"""Output bias of UMT ids U-MusT cannot emit (LMX tokens missing from its vocabulary, SOS)."""


def vocab_config(run: UMustRun) -> VocabConfig:
    data = run.data
    books = int(data["n_codebook"])
    return VocabConfig(
        num_codebooks=books,
        image_codebooks=books,
        image_codebook_size=int(data["codebook_size"]),
        audio_codebooks=books,
        audio_codebook_size=int(data["codebook_size"]),
        max_image_height=int(data["image_height"]) // int(data["image_compress_factor"]),
        midi_max_shift=int(data["midi_max_shift"]),
    )


def sides(run: UMustRun, lmx_vocab: str | Path | None = None) -> tuple[UMustIds, UMustIds]:
    """Their (encoder input, decoder output) id layouts."""
    data = run.data
    tokens = their_lmx_tokens(lmx_vocab)
    ins, outs = list(data["in_modal_type"]), list(data["out_modal_type"])
    for key in (*ins, *outs):
        if key not in MODALITY_OF:
            raise CheckpointError(f"unknown U-MusT modality {key!r} in data.in/out_modal_type", run.directory)
    source = UMustIds.build(ins, data, tokens, heights=False)
    if ins == outs:
        return source, source
    return source, UMustIds.build(outs, data, tokens, heights=bool(data.get("out_pt_height_token", False)))


def translator_config(run: UMustRun) -> TranslatorConfig:
    nn, state = run.nn, run.state
    d = int(nn["model_dim"])
    encoder, decoder = nn["encoder_params"], nn["decoder_params"]
    sub = decoder["sub_decoder"]
    if encoder.get("name", "mm_encoder") != "mm_encoder":
        raise CheckpointError(
            f"encoder {encoder.get('name')!r} is not imported (only mm_encoder)", run.checkpoint
        )
    if sub.get("name", "MultimodalSubDecoder") != "MultimodalSubDecoder":
        raise CheckpointError(f"sub-decoder {sub.get('name')!r} is not imported", run.checkpoint)
    for key in state:
        if key.endswith("token_emb.proj.0.weight") or key.endswith("input_embedder.proj.0.weight"):
            raise CheckpointError(
                "embedding projections (token_emb.proj) are not imported yet", run.checkpoint
            )
    heads = int(decoder["decoder"]["num_head"])
    if int(encoder["num_head"]) != heads:
        raise CheckpointError(
            "encoder and decoder with different head counts are not imported", run.checkpoint
        )
    width = _weight(state, "decoder.net.decoder.transformer_decoder.layers.0.1.to_q.weight", run).shape[0]
    sub_heads = int(sub["num_head"])
    sub_width = _weight(
        state, "decoder.net.sub_decoder.transformer_decoder.layers.0.1.to_q.weight", run
    ).shape[0]
    ff = _weight(state, "decoder.net.decoder.transformer_decoder.layers.2.1.ff.0.0.weight", run).shape[0]
    sub_ff = _weight(
        state, "decoder.net.sub_decoder.transformer_decoder.layers.1.1.ff.0.0.weight", run
    ).shape[0]
    longest = max(int(v) for v in run.data["max_seq_len"].values()) + 2
    dropout = float(nn.get("dropout_shared", 0.1))
    return TranslatorConfig(
        d_model=d,
        n_heads=heads,
        encoder_layers=int(encoder["num_layer"]),
        decoder_layers=int(decoder["decoder"]["num_layer"]),
        ff_dim=ff,
        dropout=dropout,
        max_source_len=longest,
        max_target_len=longest,
        subdecoder_heads=sub_heads,
        subdecoder_layers=int(sub["num_layer"]),
        subdecoder_ff_dim=sub_ff,
        head_dim=width // heads,
        subdecoder_head_dim=sub_width // sub_heads,
        separate_embeddings=True,
        decoder_final_norms=2,
        positions="umust",
        source_height_rows=False,
        source_systems="umust" if "pt" in run.data["in_modal_type"] else "umt",
        stop_at_midi_eos=False,
    )


def tasks_of(run: UMustRun) -> list[str]:
    """The UMT tasks whose source is one of their inputs and whose target one of their outputs."""
    ins = {MODALITY_OF[k] for k in run.data["in_modal_type"]}
    outs = {MODALITY_OF[k] for k in run.data["out_modal_type"]}
    return [name for name in TASKS if get_task(name).source in ins and get_task(name).target in outs]


# ------------------------------------------------------------------------------------- ids
def row_equivalents(vocab: Vocabulary, ids: UMustIds) -> dict[int, list[int]]:
    """UMT id -> the ids of its row in their layout, whose embeddings sum to its input embedding.

    Codes stand alone; a single-stream id brings ``K - 1`` of their pad 0; a special row brings
    its id in every codebook. UMT ids without a counterpart (a modality this side lacks, LMX
    tokens their vocabulary lacks) are absent.
    """
    k = vocab.num_codebooks
    rows: dict[int, list[int]] = {}
    for key, block in ids.blocks.items():
        modality = MODALITY_OF[key]
        if block.codebook_block:
            for book in range(vocab.modality_codebooks(modality)):
                first = block.start + book * block.codebook_block
                codes = vocab.codebook_range(modality, book)
                for value in range(codes.size):
                    rows[codes.id(value)] = [first + value]
            rows[vocab.sos(modality)] = [block.start + b * block.codebook_block + block.sos for b in range(k)]
            rows[vocab.eos(modality)] = [block.start + b * block.codebook_block + block.eos for b in range(k)]
        else:
            for umt_id, theirs in _single_stream_ids(vocab, key, block, ids).items():
                rows[umt_id] = [theirs] + [0] * (k - 1)
    if "pt" in ids.blocks:
        if ids.sep is not None:
            rows[vocab["image/sep"].start] = [ids.sep] * k
        for height, theirs in enumerate(ids.heights):
            rows[vocab["image/height"].id(height)] = [theirs] * k
    return rows


def fill_equivalent(vocab: Vocabulary, ids: UMustIds) -> list[int]:
    """Their ids of the row that pads a shorter system below (the image pad code of each codebook,
    the first id after the codes): the fill row of :mod:`umt.models.source_layout`."""
    block = ids.blocks["pt"]
    codes = vocab.codebook_range("image", 0).size
    return [
        block.start + book * block.codebook_block + codes for book in range(vocab.modality_codebooks("image"))
    ]


def slot_equivalents(vocab: Vocabulary, ids: UMustIds) -> dict[int, int]:
    """UMT id -> their id for the same choice in the codebook it is chosen in (codebook 0 for
    specials); UMT's PAD -> their pad 0."""
    return {umt_id: theirs[0] for umt_id, theirs in row_equivalents(vocab, ids).items()} | {PAD_ID: 0}


def _single_stream_ids(vocab: Vocabulary, key: str, block: Block, ids: UMustIds) -> dict[int, int]:
    modality = MODALITY_OF[key]
    found = {vocab.sos(modality): block.start + block.sos, vocab.eos(modality): block.start + block.eos}
    if key == "lmx":
        local = {token: index for index, token in enumerate(ids.lmx_tokens)}
        for token in LMX_TOKENS:
            if token in local:
                found[vocab.lmx_id(token)] = block.start + local[token]
        return found
    # MIDI: their PAD, EOS, UNK, then the event ranges in UMT's order
    events = [
        r
        for r in vocab.ranges.values()
        if r.name.startswith("midi/") and r.name not in ("midi/sos", "midi/eos")
    ]
    theirs = block.start + 3
    for event in events:
        for value in range(event.size):
            found[event.id(value)] = theirs + value
        theirs += event.size
    return found


# ---------------------------------------------------------------------------------- weights
def umt_state(run: UMustRun, model: Translator, source: UMustIds, target: UMustIds) -> dict[str, Tensor]:
    """Their weights under UMT's parameter names, for ``model`` (made with :func:`translator_config`)."""
    theirs = dict(run.state)
    state = {name: torch.zeros_like(value) for name, value in model.state_dict().items()}
    take = _Taker(theirs, run)
    vocab = model.vocab
    d = model.config.d_model

    encoder_table = take.rows("encoder.token_emb.embeddings.weight", source.size)
    decoder_table = take.rows("decoder.net.input_embedder.embeddings.weight", target.size)
    source_rows = row_equivalents(vocab, source)
    if model.config.source_systems == "umust":
        source_rows[model.fill_id] = fill_equivalent(vocab, source)
    rows = model.source_embedding.num_embeddings
    state["source_embedding.weight"] = _summed_rows(encoder_table, source_rows, rows)
    state["token_embedding.weight"] = _summed_rows(decoder_table, row_equivalents(vocab, target), vocab.size)
    choices = slot_equivalents(vocab, target)
    sub_table = take.rows("decoder.net.sub_decoder.token_emb.weight", target.size)
    state["subdecoder_embedding.weight"] = _picked_rows(sub_table, choices, vocab.size)
    projection = take.rows("decoder.net.sub_decoder.projection.weight", target.size)
    bias = take("decoder.net.sub_decoder.projection.bias")
    state["head.weight"] = _picked_rows(projection, choices, vocab.size)
    state["head.bias"] = torch.full((vocab.size,), NEVER, dtype=bias.dtype)
    for umt_id, their_id in choices.items():
        state["head.bias"][umt_id] = bias[their_id]

    modal = take("encoder.encoder.out_modal_emb.weight")
    for index, key in enumerate(run.data["out_modal_type"]):
        state["target_modality_embedding.weight"][vocab.modality_index(MODALITY_OF[key])] = modal[index]
    position_tables(
        state,
        "source_positions",
        take.rows("encoder.encoder.pos_emb.pos_emb.weight", source.pos_size),
        source,
        model,
    )
    position_tables(
        state,
        "target_positions",
        take.rows("decoder.net.pos_emb.pos_emb.weight", target.pos_size),
        target,
        model,
    )

    prefix = "encoder.encoder.transformer"
    for i in range(model.config.encoder_layers):
        _attention(state, take, f"encoder.{i}.attn", f"{prefix}.layers.{2 * i}", "to_out", d, fused=True)
        _block_norms(
            state, take, f"encoder.{i}", f"{prefix}.layers.{2 * i}", f"{prefix}.layers.{2 * i + 1}", "attn"
        )
        _feed_forward(state, take, f"encoder.{i}.ff", f"{prefix}.layers.{2 * i + 1}")
    state["encoder_norm.weight"] = take.norm(f"{prefix}.final_norm.gamma")

    prefix = "decoder.net.decoder.transformer_decoder"
    for i in range(model.config.decoder_layers):
        a, c, f = (f"{prefix}.layers.{3 * i + j}" for j in range(3))
        _attention(state, take, f"decoder.{i}.self_attn", a, "to_out.0", d, fused=True)
        _attention(state, take, f"decoder.{i}.cross_attn", c, "to_out.0", d, fused=False)
        state[f"decoder.{i}.self_norm.weight"] = take.norm(f"{a}.0.0.gamma")
        state[f"decoder.{i}.cross_norm.weight"] = take.norm(f"{c}.0.0.gamma")
        state[f"decoder.{i}.ff_norm.weight"] = take.norm(f"{f}.0.0.gamma")
        _feed_forward(state, take, f"decoder.{i}.ff", f)
    state["decoder_norm.weight"] = take.norm(f"{prefix}.final_norm.gamma")
    state["decoder_second_norm.weight"] = take("decoder.net.main_norm.weight")
    state["decoder_second_norm.bias"] = take("decoder.net.main_norm.bias")

    prefix = "decoder.net.sub_decoder.transformer_decoder"
    for i in range(model.config.subdecoder_layers):
        a, f = f"{prefix}.layers.{2 * i}", f"{prefix}.layers.{2 * i + 1}"
        _attention(state, take, f"subdecoder.layers.{i}.attn", a, "to_out.0", d, fused=True)
        _block_norms(state, take, f"subdecoder.layers.{i}", a, f, "attn")
        _feed_forward(state, take, f"subdecoder.layers.{i}.ff", f)
    state["subdecoder.norm.weight"] = take.norm(f"{prefix}.final_norm.gamma")
    slot = take("decoder.net.sub_decoder.pos_enc.emb.weight")
    state["subdecoder.slot.weight"] = slot * slot.shape[-1] ** -0.5  # x-transformers scales on lookup
    take.check_all_used()
    return state


class _Taker:
    """Their tensors by name, remembering which were used (every one must be)."""

    def __init__(self, theirs: dict[str, Any], run: UMustRun) -> None:
        self.theirs, self.run, self.used = theirs, run, set()

    def __call__(self, name: str) -> Tensor:
        self.used.add(name)
        return _weight(self.theirs, name, self.run).float()

    def rows(self, name: str, expected: int) -> Tensor:
        """A table that must have one row per id (or position) of the layout the config describes."""
        table = self(name)
        if table.shape[0] != expected:
            raise CheckpointError(
                f"{name} has {table.shape[0]} rows where the config's layout has {expected} "
                "(config and weights disagree)",
                self.run.checkpoint,
            )
        return table

    def norm(self, name: str) -> Tensor:
        """An x-transformers LayerNorm's scale: it stores ``gamma`` and multiplies by ``gamma + 1``
        (``unit_offset``, the default of its attention layers)."""
        return self(name) + 1.0

    def optional(self, name: str) -> Tensor | None:
        return self(name) if name in self.theirs else None

    def check_all_used(self) -> None:
        left = sorted(set(self.theirs) - self.used)
        if left:
            raise CheckpointError(
                f"{len(left)} weight(s) this importer does not place, e.g. {left[0]} "
                "(another U-MusT version?)",
                self.run.checkpoint,
            )


def _weight(state: dict[str, Any], name: str, run: UMustRun) -> Tensor:
    value = state.get(name)
    if not isinstance(value, Tensor):
        raise CheckpointError(
            f"the checkpoint has no {name} (not a U-MusT MultimodalTranslator?)", run.checkpoint
        )
    return value


def _summed_rows(table: Tensor, rows: dict[int, list[int]], size: int) -> Tensor:
    out = table.new_zeros(size, table.shape[1])
    for umt_id, theirs in rows.items():
        if max(theirs) >= table.shape[0]:
            raise CheckpointError(
                f"an embedding table of {table.shape[0]} rows is smaller than the config says"
            )
        out[umt_id] = table[theirs].sum(0)
    return out


def _picked_rows(table: Tensor, choices: dict[int, int], size: int) -> Tensor:
    out = table.new_zeros(size, table.shape[1])
    for umt_id, their_id in choices.items():
        if their_id >= table.shape[0]:
            raise CheckpointError(f"an output table of {table.shape[0]} rows is smaller than the config says")
        out[umt_id] = table[their_id]
    return out


def _attention(state: dict, take: _Taker, ours: str, theirs: str, out_name: str, d: int, fused: bool) -> None:
    q, k, v = (take(f"{theirs}.1.to_{x}.weight") for x in "qkv")
    if fused:
        state[f"{ours}.qkv.weight"] = torch.cat([q, k, v])
    else:
        state[f"{ours}.query.weight"] = q
        state[f"{ours}.kv.weight"] = torch.cat([k, v])
    out = take.optional(f"{theirs}.1.{out_name}.weight")
    # x-transformers has no output projection for one head as wide as the model: an identity
    state[f"{ours}.out.weight"] = out if out is not None else torch.eye(d, q.shape[0])


def _block_norms(state: dict, take: _Taker, ours: str, attention: str, feed_forward: str, name: str) -> None:
    state[f"{ours}.{name}_norm.weight"] = take.norm(f"{attention}.0.0.gamma")
    state[f"{ours}.ff_norm.weight"] = take.norm(f"{feed_forward}.0.0.gamma")


def _feed_forward(state: dict, take: _Taker, ours: str, theirs: str) -> None:
    state[f"{ours}.up.weight"] = take(f"{theirs}.1.ff.0.0.weight")
    state[f"{ours}.up.bias"] = take(f"{theirs}.1.ff.0.0.bias")
    state[f"{ours}.down.weight"] = take(f"{theirs}.1.ff.2.weight")
    state[f"{ours}.down.bias"] = take(f"{theirs}.1.ff.2.bias")


def position_tables(state: dict, name: str, table: Tensor, ids: UMustIds, model: Translator) -> None:
    """Their flat position table onto UMT's per-modality tables of ``name`` (``source_positions`` or
    ``target_positions``): index ``t >= 1`` of a sequence is their row ``offset + t - 1``; image
    columns and rows are their ``x`` and ``y`` rows. Rows past their table stay zero."""
    vocab, rows = model.vocab, table.shape[0]
    positions = getattr(model, name)
    length = positions.max_len

    def row(index: int) -> Tensor:
        return table[index] if 0 < index < rows else table.new_zeros(table.shape[1])

    for key, shift in ids.pos_shift.items():
        modality = vocab.modality_index(MODALITY_OF[key])
        if isinstance(shift, tuple):
            x, y = shift
            for column in range(length):
                state[f"{name}.image_column.weight"][column] = row(x + column)
            for image_row in range(positions.max_rows):
                state[f"{name}.image_row.weight"][image_row] = row(y + image_row)
        else:
            for t in range(1, length):
                state[f"{name}.sequence.weight"][modality * length + t] = row(shift + t - 1)


def import_translator(run: UMustRun, lmx_vocab: str | Path | None = None) -> Translator:
    """The run's translator as a UMT :class:`Translator` (eval mode) computing what theirs does."""
    source, target = sides(run, lmx_vocab)
    model = Translator(translator_config(run), Vocabulary(vocab_config(run)))
    state = umt_state(run, model, source, target)
    shapes = {name: value.shape for name, value in model.state_dict().items()}
    for name, value in state.items():
        expected = shapes[name]
        if value.shape != expected:
            raise CheckpointError(
                f"{name}: their weights give {tuple(value.shape)}, the config {tuple(expected)}",
                run.checkpoint,
            )
    model.load_state_dict(state, strict=True)
    return model.eval()


def umt_rows(sequences: Tensor, vocab: Vocabulary, ids: UMustIds) -> Tensor:
    """Their sequences ``[B, L, K]`` (one side's ids, SOS row first) as UMT rows.

    A whole special or single-stream row becomes its UMT id and PAD (row 0 the SOS: U-MusT's SOS
    and EOS rows are often the same), a code row its codes id by id, their padding rows PAD. A row
    with no UMT counterpart (a special id beside codes) raises ``ValueError``.
    """
    k = vocab.num_codebooks
    equivalents = row_equivalents(vocab, ids)
    sos = {vocab.sos(m) for m in vocab.modalities}
    whole = {tuple(t): u for u, t in equivalents.items() if len(t) == k and u not in sos}
    opening = {tuple(t): u for u, t in equivalents.items() if len(t) == k and u in sos}
    codes = {t[0]: u for u, t in equivalents.items() if len(t) == 1}
    out = torch.full(sequences.shape, PAD_ID, dtype=torch.long)
    for b, sequence in enumerate(sequences.tolist()):
        for t, row in enumerate(sequence):
            key = tuple(row)
            if not any(row):
                continue
            if t == 0 and key in opening:
                out[b, t, 0] = opening[key]
            elif key in whole:
                out[b, t, 0] = whole[key]
            elif all(value in codes for value in row):
                out[b, t] = torch.tensor([codes[value] for value in row])
            else:
                raise ValueError(f"their row {row} has no UMT counterpart")
    return out
