"""Speed of :class:`umt.models.translator.Translator` against an x-transformers encoder-decoder.

``python -m umt.bench translator [--sizes tiny,paper] [--device cpu|cuda] [--threads N]
[--precision fp32|bf16] [--repeats R] ...``

Both models get the same width, depth, heads, feed-forward size, vocabulary size, dropout, batch
and sequence lengths. The peer (:class:`PeerTranslator`) is the equivalent encoder-decoder built
from x-transformers modules (the library of the paper's code, MALerLab/U-MusT): an
``x_transformers.XTransformer`` core (pre-LN, GELU, learned absolute positions, ``attn_flash=True``
so it uses SDPA too) that reads rows like ours (codebook-0 ids as tokens plus the summed
embeddings of codebooks ``1..K-1`` as ``sum_embeds``), and a codebook sub-decoder built as U-MusT's
``MultimodalSubDecoder`` is: an ``x_transformers.Decoder`` over the slots
``[h, h + E(c_0), ...]`` plus a learned slot position embedding, and ``Linear(d, V)`` over the
whole vocabulary, logits masked with ``-inf`` to the ids allowed for (target modality, codebook).
Both sub-decoders run only the slots the target modality uses (1 for "→midi", ``K`` for
"→audio"); U-MusT itself runs all ``K`` slots even for single-stream targets, so the peer here is
given no more work than ours. Each workload compares both models on the same batches
and target modality; decoding is greedy in both, with x-transformers' own key/value caches (the
main decoder's ``cache=`` and the sub-decoder's per-step slot cache).

* training: rows/s (source + target rows) of forward + backward + AdamW step. Both models get the
  same optimiser: ``torch.optim.AdamW(lr=1e-4, fused=True)`` when a one-element probe shows that
  fused AdamW runs on the device and dtype of their parameters (CPU and CUDA, float32 / bf16, in
  torch 2.13), else the default AdamW for both. The default is the for-loop implementation on CPU:
  at the paper size on one CPU thread it took ~1.1-1.5 s of a ~6 s step, the fused one ~0.2 s.
* decoding: cached greedy decoding steps/s (batch x steps / time), EOS disabled so both run the
  same number of steps; each model's step picks the ids of every codebook slot the target uses.

Under each figure the table gives the achieved rate of both models, to show what bounds them:

* training GFLOP/s: ``6 x sum(parameters x rows they multiply)`` per step over the median step
  time. Each model's non-embedding parameters are counted against the rows they are applied to:
  the encoder stack and the decoder's cross-attention key/value projections against the source
  rows, the rest of the decoder side against the target rows (``target_len - 1`` inputs): decoder
  layers, final norm, and once per slot the target uses the sub-decoder and the output head (the
  peer's over the whole vocabulary; ours on the ids allowed for that slot, as the loss computes
  it). Lookup tables do no FLOPs; attention scores (``QK^T``, ``AV``) are left out, as in the
  usual ``6 x N`` count.
* decoding weight GB/s: the weight bytes one cached decoding step streams (the same target-side
  parameters: the cross-attention keys and values of the source are computed once per call; 4
  bytes a weight in fp32, 2 in bf16) x decoding steps per second (steps, not batch x steps: the
  weights are read once per step for the whole batch). Small-batch decoding streams every decoder
  weight once per step and does little arithmetic per byte, so equal GB/s means both sit at the
  same memory-bandwidth ceiling. The timed ``generate`` call includes its one encoder pass, so the
  figure is a lower bound for the decoding loop; at the tiny size the weights fit in cache.

* training GFLOP/s / matmul peak: the training GFLOP/s above against plain ``torch.mm`` timed in
  the same run on the products a training step makes (:func:`matmul_shapes`: every linear
  layer's forward and both backward products at the workload's rows), in the same precision. A
  step that did nothing but those products would reach 100 %; the goal at the paper size is 70 %.

Timing is wall-clock (``time.perf_counter``, after synchronising on CUDA): process CPU time
counts the spinning of idle worker threads, which on shared cores swings the ratios wildly. On
CPU the benchmark runs on ``--threads`` threads (default 1, so figures are reproducible on
shared machines). Every timed function gets one warm-up call; then ours and the peer's run in
``--repeats`` interleaved rounds (A B B A ..., so neither always goes first) and each figure is
the median over the rounds, with the spread ``(max - min) / median`` beside it.

``--precision bf16`` (the default on CUDA) runs both models under bf16 autocast, ``fp32`` in
float32. MFU is printed only on a GPU: the training GFLOP/s above against ``--peak-tflops``
(default: the H100/H200 SXM dense peak of the chosen precision).

The final summary table gives, per size and workload, the ratio (ours / peer) and whether it
meets the goal: training >= 1.3x, cached decoding >= 2x.

Measured on one thread of the 2-core development machine (fp32, 2026-12-01, nothing else
running): at the tiny size ours is 2.2x (→midi) and 4.8x (→audio) in training and 2.9x / 3.7x in
decoding, from fewer operations per step and a head restricted to the allowed ids. At the paper
size the ratios are 0.98x / 1.05x (training) and 1.11x / 1.28x (decoding): both models run their
matrix products at the same 83-88 GFLOP/s and do within a few percent the same arithmetic, so no
implementation of this architecture gets a 1.3x or 2x margin there on a CPU; the decoding lead is
the peer's full-vocabulary head, which it streams once per slot.

``--decode-dtype int8`` (``umt translate --dtype int8``; the peer stays fp32), same machine, one
thread, 2026-12-05, two runs: at the paper size ours decodes at 2.72x / 2.57x (→midi) and 2.97x /
2.92x (→audio) the peer's steps/s (53.1 / 48.3 against 19.5 / 16.2 steps/s in the first run),
training 0.96-1.05x. Training runs at 64.9 % / 65.9 % (first run) and 61.4 % / 60.1 % (second,
with the loss's empty lookup removed; the peer fell alike, 66-67 % to 61-67 %) of the matmul peak
of the model's shapes measured in the same run (140-148 GFLOP/s), short of the 70 % goal.
Profiled, a paper-size step at this
workload spends ~70 % of its time in the matrix products (at ~93 % of their isolated rate), ~10 %
in fused AdamW's pass over 409M parameters and their moments, 5-7 % drawing and applying dropout
masks, 2-4 % in attention's math path (attention-weight dropout keeps SDPA off its fused CPU
kernel) and the rest in zero-filling dense embedding gradients, norms and GELU. At batch 4 with
256 / 128 rows the optimizer's share falls and ours reached 68.5-69.4 % (two runs; the share moves
by 2-4 points between runs on this shared machine). bf16 autocast on this CPU (AMX) makes the
products 6x faster (847 GFLOP/s peak) but the step only 1.09x: autocast re-casts every weight
in every forward and backward, and the fp32 work around the products remains.

Measured on one NVIDIA H200 (bf16 autocast, torch 2.11 + CUDA 13, 2026-12-04, ``make gpu-check``'s
settings: batch 16, 1024 source and 512 target rows, 3 training steps and 64 decoding steps a
round, median of 3): at the paper size ours trains at 1.52x (→midi) and 1.56x (→audio) the peer's
rows/s, 20.5 % MFU against its 13.7-14.1 %, and decodes at 2.88x / 2.91x, every goal met. At the
tiny size (d=32, 0.8M parameters) both are bound by kernel launches, not arithmetic: training
1.05x / 0.85x, decoding 1.94x / 1.59x.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt.models.quantize import DTYPES, for_decoding
from umt.models.translator import Translator, TranslatorConfig
from umt.utils.optim import fused_adamw_supported
from umt.vocab import PAD_ID, default_vocabulary

SIZES = ("tiny", "paper")
TARGETS = ("midi", "audio")
IGNORE_INDEX = -100
GOALS = {"train": 1.3, "decode": 2.0}
"""Minimum ratio (ours / peer) per measure."""
PEAK_TFLOPS = {"bf16": 989.0, "fp32": 67.0}
"""H100/H200 SXM dense peaks (bf16 tensor cores; fp32 without TF32, PyTorch's default)."""
ELEMENT_BYTES = {"bf16": 2, "fp32": 4, "int8": 1}
"""Bytes a weight as the matrix products of each precision read it."""


@dataclass
class Workload:
    batch: int
    source_len: int
    target_len: int
    train_steps: int
    decode_steps: int


DEFAULT_WORKLOADS = {
    "tiny": Workload(batch=8, source_len=256, target_len=128, train_steps=3, decode_steps=64),
    # 32 steps: with fewer, the one encoder pass per generate call dominates the decoding figure.
    "paper": Workload(batch=2, source_len=128, target_len=64, train_steps=1, decode_steps=32),
}


@dataclass
class Result:
    """One measure of one size: our figure and the peer's (higher is faster), with their spreads."""

    size: str
    measure: str  # "train" or "decode"
    target: str  # target modality of our model
    unit: str
    ours: float
    peer: float
    ours_spread: float = 0.0
    peer_spread: float = 0.0

    @property
    def ratio(self) -> float:
        return self.ours / self.peer

    @property
    def goal(self) -> float:
        return GOALS[self.measure]

    @property
    def met(self) -> bool:
        return self.ratio >= self.goal

    @property
    def label(self) -> str:
        return f"{self.measure} {self.unit} audio→{self.target}"


@dataclass
class PeakShare:
    """Training GFLOP/s of both models against the matmul peak of our model's shapes (same run)."""

    size: str
    target: str
    peak: float
    ours_gflops: float
    peer_gflops: float

    @property
    def ours(self) -> float:
        return self.ours_gflops / self.peak

    @property
    def peer(self) -> float:
        return self.peer_gflops / self.peak


PEAK_SHARE_GOAL = 0.7
"""Training at the paper size should run at >= 70 % of the matmul peak of its shapes (issue #19)."""


def peak_table(shares: list[PeakShare]) -> str:
    """Training against the matmul peak, one line per size and target, the goal at the paper size."""
    header = f"{'umt':>11} {'x-transformers':>15} {'goal':>6}  met"
    lines = [f"{'size':6} {'training GFLOP/s / matmul peak':30} {header}"]
    for s in shares:
        goal, met = (
            (f"{PEAK_SHARE_GOAL:.0%}", "yes" if s.ours >= PEAK_SHARE_GOAL else "NO")
            if s.size == "paper"
            else ("", "")
        )
        lines.append(f"{s.size:6} {'audio→' + s.target:30} {s.ours:11.1%} {s.peer:15.1%} {goal:>6}  {met}")
    return "\n".join(lines)


def summary_table(results: list[Result]) -> str:
    """The final table: one line per result with its ratio, goal and whether the goal is met."""
    lines = [f"{'size':6} {'workload':30} {'umt':>11} {'x-transformers':>15} {'ratio':>7} {'goal':>6}  met"]
    for r in results:
        lines.append(
            f"{r.size:6} {r.label:30} {r.ours:11.1f} {r.peer:15.1f} {r.ratio:6.2f}x "
            f"{r.goal:5.1f}x  {'yes' if r.met else 'NO'}"
        )
    met = sum(r.met for r in results)
    lines.append(f"goals met: {met}/{len(results)}")
    return "\n".join(lines)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(
    fns: dict[str, Callable[[], object]], calls: int, repeats: int, device
) -> dict[str, tuple[float, float]]:
    """Median seconds per call of each function and its spread ``(max - min) / median``.

    One warm-up call each, then ``repeats`` rounds of ``calls`` calls per function; rounds
    alternate the order (A B, B A, ...) so slow drifts of a shared machine hit both alike.
    """
    for fn in fns.values():
        fn()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            for _ in range(calls):
                fns[name]()
            _sync(device)
            samples[name].append((time.perf_counter() - start) / calls)
    out = {}
    for name, values in samples.items():
        median = statistics.median(values)
        out[name] = (median, (max(values) - min(values)) / median)
    return out


def _autocast(device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _ours(size: str, vocab, device):
    config = TranslatorConfig.tiny() if size == "tiny" else TranslatorConfig.paper()
    return Translator(config, vocab).to(device), config


class PeerTranslator(nn.Module):
    """Our model's equivalent built from x-transformers modules, plus plain embeddings and a linear.

    ``core``: an ``XTransformer`` with our widths and depths; rows ``[B, L, K]`` enter both of its
    stacks as codebook-0 ids (its token embedding and positions) plus ``sum_embeds``, the summed
    token embeddings of codebooks ``1..K-1`` (PAD embeds to zero at init). Its decoder's output
    head is dropped: the sub-decoder's ``projection`` replaces it. The sub-decoder is U-MusT's
    ``MultimodalSubDecoder``: ``slot_decoder`` (a causal ``x_transformers.Decoder``) over the slots
    ``[h, h + E(c_0), ...] + slot_positions``, ``E`` the decoder's token embedding, and
    ``projection`` over the whole vocabulary, masked to the ids ``allowed`` for (target modality,
    codebook). Only the slots the target modality uses run (``used_slots``). Dropout sits where
    ours has it and where U-MusT puts it: on the embeddings, the attention weights, inside the
    feed-forward and on the output of every attention and feed-forward branch (x-transformers has
    the first three; U-MusT appends the last to each layer, and so does :func:`_branch_dropout`).
    """

    def __init__(self, config, vocab, max_source_len: int, max_target_len: int) -> None:
        from x_transformers import Decoder, XTransformer

        super().__init__()
        d = config.d_model
        common = dict(
            depth=None,
            heads=config.n_heads,
            ff_mult=config.ff_dim // d,
            attn_flash=True,
            attn_dim_head=d // config.n_heads,  # x-transformers defaults to 64 per head
            attn_dropout=config.dropout,
            ff_dropout=config.dropout,
            emb_dropout=config.dropout,
            num_tokens=vocab.size,
        )
        kwargs = {}
        for prefix, depth, max_len in (
            ("enc_", config.encoder_layers, max_source_len),
            ("dec_", config.decoder_layers, max_target_len),
        ):
            for key, value in {**common, "depth": depth, "max_seq_len": max_len}.items():
                kwargs[prefix + key] = value
        self.core = XTransformer(dim=d, **kwargs)
        self.core.decoder.net.to_logits = None  # unused: `projection` is the output head
        with torch.no_grad():
            for wrapper in (self.core.encoder, self.core.decoder.net):
                wrapper.token_emb.emb.weight[PAD_ID].zero_()
        heads = config.subdecoder_heads
        self.slot_decoder = Decoder(
            dim=d,
            depth=config.subdecoder_layers,
            heads=heads,
            ff_mult=(config.subdecoder_ff_dim or config.ff_dim) // d,
            attn_dim_head=d // heads,
            attn_flash=True,
            attn_dropout=config.dropout,
            ff_dropout=config.dropout,
        )
        for layers in (self.core.encoder.attn_layers, self.decoder.attn_layers, self.slot_decoder):
            _branch_dropout(layers, config.dropout)
        self.num_codebooks = vocab.num_codebooks
        self.slot_positions = nn.Embedding(self.num_codebooks, d)
        self.projection = nn.Linear(d, vocab.size)
        masks = [torch.from_numpy(vocab.allowed_mask(m)) for m in vocab.modalities]
        allowed = torch.stack(masks)  # [M, K, V]
        self.register_buffer("allowed", allowed, persistent=False)
        self.used_slots = tuple(vocab.modality_codebooks(m) for m in vocab.modalities)
        self.sos_ids = tuple(vocab.sos(m) for m in vocab.modalities)
        self.modality_index = vocab.modality_index

    @property
    def decoder(self) -> nn.Module:
        """The core's decoder ``TransformerWrapper`` (without its autoregressive wrapper)."""
        return self.core.decoder.net

    @staticmethod
    def split_rows(wrapper: nn.Module, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Rows ``[B, L, K]`` -> codebook-0 ids ``[B, L]`` and ``sum_embeds [B, L, d]`` of the rest."""
        return rows[..., 0], wrapper.token_emb(rows[..., 1:]).sum(-2)

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        ids, extra = self.split_rows(self.core.encoder, src)
        return self.core.encoder(ids, mask=src_mask, sum_embeds=extra, return_embeddings=True)

    def slot_inputs(self, hidden: Tensor, previous: Tensor) -> Tensor:
        """``hidden [..., d]``, ids ``previous [..., k]`` -> slots ``[..., k + 1, d]`` with positions."""
        embedded = self.decoder.token_emb(previous)
        slots = torch.cat([hidden[..., None, :], hidden[..., None, :] + embedded], dim=-2)
        return slots + self.slot_positions.weight[: slots.shape[-2]]

    def masked_logits(self, states: Tensor, allowed: Tensor) -> Tensor:
        """Full-vocabulary logits of ``states [..., d]``; ``-inf`` where ``allowed [..., V]`` is False."""
        return self.projection(states).masked_fill(~allowed, float("-inf"))

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Teacher-forced mean cross-entropy over the used slots of the real target rows."""
        tgt, tgt_mask, modality = batch["tgt"], batch["tgt_mask"], batch["tgt_modality"]
        used = max(self.used_slots[m] for m in set(modality.tolist()))
        src_mask = batch["src_mask"]
        enc = self.encode(batch["src"], src_mask)
        ids, extra = self.split_rows(self.decoder, tgt[:, :-1])
        hidden = self.decoder(
            ids, context=enc, context_mask=src_mask, sum_embeds=extra, return_embeddings=True
        )  # [B, T-1, d]
        target = tgt[:, 1:, :used]  # [B, T-1, used]
        batch_size, rows = target.shape[:2]
        slots = self.slot_inputs(hidden, target[..., :-1]).flatten(0, 1)  # [B (T-1), used, d]
        states = self.slot_decoder(slots).unflatten(0, (batch_size, rows))
        allowed = self.allowed[modality, :used][:, None]  # [B, 1, used, V]
        logits = self.masked_logits(states, allowed).float()
        labels = target.masked_fill(~tgt_mask[:, 1:, None], IGNORE_INDEX)
        return F.cross_entropy(logits.flatten(0, 2), labels.flatten(), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def generate(self, src: Tensor, src_mask: Tensor, target: str, steps: int) -> Tensor:
        """Cached greedy decoding of ``steps`` rows after SOS (no EOS stop) -> rows ``[B, steps + 1, K]``.

        The main decoder gets the whole prefix and x-transformers' cache each step (as its own
        ``AutoregressiveWrapper.generate(cache_kv=True)`` does: the wrapper embeds the prefix, the
        attention layers run the new position only); the slot decoder gets one new slot per call
        with its own cache. Codebooks the target does not use stay PAD.
        """
        modality = self.modality_index(target)
        used = self.used_slots[modality]
        allowed = self.allowed[modality]  # [K, V]
        enc = self.encode(src, src_mask)
        rows = torch.full(
            (src.shape[0], steps + 1, self.num_codebooks), PAD_ID, dtype=torch.long, device=src.device
        )
        rows[:, 0, 0] = self.sos_ids[modality]
        extra = self.split_rows(self.decoder, rows)[1]  # sum_embeds of every row, filled as they come
        cache = None
        for step in range(steps):
            hidden, cache = self.decoder(
                rows[:, : step + 1, 0],
                context=enc,
                context_mask=src_mask,
                sum_embeds=extra[:, : step + 1],
                cache=cache,
                return_embeddings_and_intermediates=True,
            )
            row = self._greedy_row(hidden[:, -1], allowed, used)
            rows[:, step + 1] = row
            extra[:, step + 1] = self.split_rows(self.decoder, row[:, None])[1][:, 0]
        return rows

    def _greedy_row(self, hidden: Tensor, allowed: Tensor, used: int) -> Tensor:
        """One step's ids ``[B, K]`` from decoder states ``hidden [B, d]``, slot by slot (cached)."""
        row = torch.full(
            (hidden.shape[0], self.num_codebooks), PAD_ID, dtype=torch.long, device=hidden.device
        )
        slot = hidden + self.slot_positions.weight[0]
        cache = None
        for k in range(used):
            # With a cache the attention layers run only the last position, so the new slot suffices.
            out, cache = self.slot_decoder(slot[:, None], cache=cache, return_hiddens=True)
            row[:, k] = self.masked_logits(out[:, -1], allowed[k]).argmax(-1)
            if k + 1 < used:
                slot = hidden + self.decoder.token_emb(row[:, k]) + self.slot_positions.weight[k + 1]
        return row


def _branch_dropout(layers: nn.Module, p: float) -> None:
    """Dropout on the output of every attention and feed-forward branch of x-transformers
    ``AttentionLayers``, before the residual add (as U-MusT's ``_add_dropout_after_attn`` /
    ``_add_dropout_after_ff`` do, and as our blocks have)."""
    from x_transformers.x_transformers import Attention, FeedForward

    for block in layers.layers:
        branch = block[1]
        if isinstance(branch, Attention):
            branch.to_out = nn.Sequential(branch.to_out, nn.Dropout(p))
        elif isinstance(branch, FeedForward):
            branch.ff.append(nn.Dropout(p))


def _peer(config, vocab, workload: Workload, device) -> PeerTranslator:
    max_target_len = max(workload.target_len, workload.decode_steps + 1)
    return PeerTranslator(config, vocab, workload.source_len, max_target_len).to(device)


def _inputs(vocab, workload: Workload, device, target: str):
    rng = np.random.default_rng(0)
    batch, source_len, target_len = workload.batch, workload.source_len, workload.target_len
    codes = rng.integers(
        0, vocab.config.audio_codebook_size, (batch, source_len, vocab.config.audio_codebooks)
    )
    src = torch.from_numpy(vocab.codes_to_ids("audio", codes))
    src[:, 0] = torch.from_numpy(vocab.special_row(vocab.sos("audio")))
    if target == "midi":
        pitch = vocab["midi/pitch"]
        ids = rng.integers(pitch.start, pitch.stop, (batch, target_len))
        tgt = torch.from_numpy(np.stack([vocab.single_stream_rows(row) for row in ids]))
    else:
        codes = rng.integers(
            0, vocab.config.audio_codebook_size, (batch, target_len, vocab.config.audio_codebooks)
        )
        tgt = torch.from_numpy(vocab.codes_to_ids("audio", codes))
    tgt[:, 0] = torch.from_numpy(vocab.special_row(vocab.sos(target)))
    tgt[:, -1] = torch.from_numpy(vocab.special_row(vocab.eos(target)))
    return {
        "src": src.to(device),
        "src_mask": torch.ones(batch, source_len, dtype=torch.bool, device=device),
        "tgt": tgt.to(device),
        "tgt_mask": torch.ones(batch, target_len, dtype=torch.bool, device=device),
        "src_modality": torch.full((batch,), vocab.modality_index("audio"), device=device),
        "tgt_modality": torch.full((batch,), vocab.modality_index(target), device=device),
    }


def _train_step(optimiser, compute_loss: Callable, autocast: Callable) -> Callable[[], None]:
    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast():
            loss = compute_loss()
        loss.backward()
        optimiser.step()

    return step


def _adamw(model, fused: bool):
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if fused else None)


def _parameters(*modules) -> int:
    """Parameters of ``modules`` that take part in matrix products (lookup tables do no FLOPs)."""
    total = 0
    for module in modules:
        embedding = {
            id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
        }
        total += sum(p.numel() for p in module.parameters() if id(p) not in embedding)
    return total


@dataclass(frozen=True)
class MatmulParameters:
    """A model's non-embedding parameters, split by the rows they multiply."""

    source: int
    """Applied once per source row: encoder stack, its norm, the decoder's cross-attention K/V."""
    target: int
    """Applied once per target row, i.e. per decoding step: the rest of the decoder side."""

    def train_flops(self, source_rows: int, target_rows: int) -> int:
        """FLOPs of one training step: 2 per multiply-add forward, 4 backward."""
        return 6 * (self.source * source_rows + self.target * target_rows)

    def step_bytes(self, precision: str) -> int:
        """Weight bytes one cached decoding step streams."""
        return self.target * ELEMENT_BYTES[precision]


def ours_matmul_parameters(model, target: str) -> MatmulParameters:
    """Our model's split for ``target`` rows: sub-decoder and restricted head once per used slot."""
    modality = model.vocab.modality_index(target)
    slots = model.vocab.modality_codebooks(target)
    allowed = sum(getattr(model, f"allowed_ids_{modality}_{k}").numel() for k in range(slots))
    kv = _parameters(*(layer.cross_attn.kv for layer in model.decoder))
    return MatmulParameters(
        source=_parameters(model.encoder, model.encoder_norm) + kv,
        target=_parameters(model.decoder, model.decoder_norm)
        - kv
        + slots * _parameters(model.subdecoder)
        + allowed * (model.head.in_features + 1),
    )


def peer_matmul_parameters(model: PeerTranslator, target: str) -> MatmulParameters:
    """The peer's split for ``target`` rows: slot decoder and whole-vocabulary head once per used slot."""
    layers = model.decoder.attn_layers
    kv = sum(
        _parameters(block.to_k, block.to_v)
        for kind, (_, block, _) in zip(layers.layer_types, layers.layers)
        if kind == "c"
    )
    slots = model.used_slots[model.modality_index(target)]
    return MatmulParameters(
        source=_parameters(model.core.encoder.attn_layers) + kv,
        target=_parameters(layers) - kv + slots * _parameters(model.slot_decoder, model.projection),
    )


def matmul_shapes(model: Translator, source_rows: int, target_rows: int, target: str) -> Counter:
    """The matrix products one training step of ``model`` makes through its linear layers:
    ``(M, K, N) -> count``, forward ``[M, K] @ [K, N]`` and both backward products (input
    gradient ``[M, N] @ [N, K]``, weight gradient ``[N, M] @ [M, K]``). Encoder layers and the
    cross-attention key/value projections multiply the source rows; the rest the target rows, the
    sub-decoder once per slot ``target`` uses. The restricted head is left out (its rows change per
    slot; it is a small part of the arithmetic)."""
    shapes: Counter = Counter()
    slots = model.vocab.modality_codebooks(target)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name == "head":
            continue
        source_side = name.startswith("encoder.") or name.endswith("cross_attn.kv")
        rows = source_rows if source_side else target_rows
        repeat = slots if name.startswith("subdecoder.") else 1
        k, n = module.in_features, module.out_features
        for shape in ((rows, k, n), (rows, n, k), (n, rows, k)):
            shapes[shape] += repeat
    return shapes


def matmul_peak(shapes: Counter, device, precision: str, repeats: int = 5) -> float:
    """GFLOP/s of plain ``torch.mm`` over ``shapes`` (:func:`matmul_shapes`), each product timed
    alone (median of ``repeats``) in the benchmark's precision: the rate these shapes allow on this
    hardware, the ceiling for a training step that does nothing but these products."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    flops = seconds = 0.0
    for (m, k, n), count in shapes.items():
        flops += 2 * m * k * n * count
        seconds += _mm_seconds(m, k, n, torch.device(device), dtype, repeats) * count
    return flops / seconds / 1e9


@functools.cache
def _mm_seconds(m: int, k: int, n: int, device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """Median seconds of ``[m, k] @ [k, n]``; timed once a run (both targets share most shapes)."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench translator")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: tiny, paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: 1 on CPU, reproducible on shared cores)"
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), help="default: bf16 autocast on CUDA, fp32 on CPU"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (median)")
    parser.add_argument("--batch", type=int, help="override the batch of every size")
    parser.add_argument("--source-len", type=int, help="override the source rows of every size")
    parser.add_argument("--target-len", type=int, help="override the target rows of every size")
    parser.add_argument("--train-steps", type=int, help="training steps per timing round")
    parser.add_argument("--decode-steps", type=int, help="decoding steps per generate call")
    parser.add_argument("--peak-tflops", type=float, help="GPU peak for MFU (default: H100/H200 SXM dense)")
    parser.add_argument(
        "--decode-dtype",
        choices=DTYPES,
        default="fp32",
        help="our model's weights when decoding (umt translate --dtype); the peer's stay as trained",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    peak = args.peak_tflops or PEAK_TFLOPS[precision]
    sizes = args.sizes.split(",")
    for size in sizes:
        if size not in SIZES:
            raise SystemExit(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    vocab = default_vocabulary()
    print(
        f"translator benchmark on {device}, {torch.get_num_threads()} torch threads, {precision}, "
        f"median of {args.repeats} interleaved rounds (wall clock), vocabulary {vocab.size} ids"
    )
    results: list[Result] = []
    shares: list[PeakShare] = []
    for size in sizes:
        base = DEFAULT_WORKLOADS[size]
        workload = Workload(
            batch=args.batch or base.batch,
            source_len=args.source_len or base.source_len,
            target_len=args.target_len or base.target_len,
            train_steps=args.train_steps or base.train_steps,
            decode_steps=args.decode_steps or base.decode_steps,
        )
        results += bench_size(
            size, workload, vocab, device, precision, args.repeats, peak, args.decode_dtype, shares
        )
    print("\nsummary (ratio = umt / x-transformers with the same sub-decoder, on the same workload)")
    print(summary_table(results))
    print(f"\ntraining arithmetic against the matmul peak of the model's shapes ({precision}, same run)")
    print(peak_table(shares))


def bench_size(
    size: str,
    workload: Workload,
    vocab,
    device,
    precision: str,
    repeats: int,
    peak_tflops: float,
    decode_dtype: str = "fp32",
    peak_shares: list[PeakShare] | None = None,
) -> list[Result]:
    """Time one size: training then decoding, ours and the peer's interleaved; prints and returns
    the results (and appends to ``peak_shares`` each target's training rate against the matmul
    peak of the model's shapes)."""
    peak_shares = [] if peak_shares is None else peak_shares
    torch.manual_seed(0)
    autocast = lambda: _autocast(device, precision)  # noqa: E731
    batches = {target: _inputs(vocab, workload, device, target) for target in TARGETS}
    ours, config = _ours(size, vocab, device)
    peer = _peer(config, vocab, workload, device)
    midi = batches["midi"]

    # Training: both models and their optimisers are alive, so rounds can alternate.
    ours.train()
    peer.train()

    fused = fused_adamw_supported([*ours.parameters(), *peer.parameters()])
    ours_optimiser, peer_optimiser = _adamw(ours, fused), _adamw(peer, fused)
    train_fns: dict[str, Callable[[], object]] = {
        f"ours {target}": _train_step(ours_optimiser, lambda b=batch: ours.loss(b)[0], autocast)
        for target, batch in batches.items()
    }
    for target, batch in batches.items():
        train_fns[f"peer {target}"] = _train_step(peer_optimiser, lambda b=batch: peer.loss(b), autocast)
    train = interleaved_medians(train_fns, workload.train_steps, repeats, device)
    del ours_optimiser, peer_optimiser, train_fns

    # Decoding: greedy, EOS never chosen so both run decode_steps steps.
    ours.eval()
    peer.eval()
    with torch.no_grad():
        for modality in vocab.modalities:
            ours.head.bias[vocab.eos(modality)] = -1e4
            peer.projection.bias[vocab.eos(modality)] = -1e4
    decoder = ours if decode_dtype == "fp32" else for_decoding(copy.deepcopy(ours), decode_dtype)
    ours_weights = precision if decode_dtype == "fp32" else decode_dtype

    def ours_decode(target: str) -> Callable[[], object]:
        modality = torch.full((workload.batch,), vocab.modality_index(target), device=device)

        def decode() -> object:
            with autocast():
                return decoder.generate(
                    midi["src"],
                    midi["src_mask"],
                    midi["src_modality"],
                    modality,
                    workload.decode_steps + 1,
                    temperature=0.0,
                )

        return decode

    def peer_decode(target: str) -> Callable[[], object]:
        def decode() -> object:
            with autocast():
                return peer.generate(midi["src"], midi["src_mask"], target, workload.decode_steps)

        return decode

    decode_fns = {f"ours {target}": ours_decode(target) for target in TARGETS}
    decode_fns.update({f"peer {target}": peer_decode(target) for target in TARGETS})
    decode = interleaved_medians(decode_fns, 1, repeats, device)

    print(
        f"\n[{size}] d={config.d_model} layers={config.encoder_layers}+{config.decoder_layers} "
        f"heads={config.n_heads} ff={config.ff_dim}; params umt {_count(ours) / 1e6:.1f}M, "
        f"x-transformers {_count(peer) / 1e6:.1f}M; batch {workload.batch}, source {workload.source_len} "
        f"rows, target {workload.target_len} rows, {workload.decode_steps} decoding steps; "
        f"AdamW {'fused' if fused else 'default'}; umt decodes with {ours_weights} weights"
    )
    rows = workload.batch * (workload.source_len + workload.target_len)
    generated = workload.batch * workload.decode_steps
    source_rows, target_rows = (
        workload.batch * workload.source_len,
        workload.batch * (workload.target_len - 1),
    )
    results = []
    rates: dict[tuple[str, str], tuple[float, float, str]] = {}
    for target in TARGETS:
        ours_split = ours_matmul_parameters(ours, target)
        peer_split = peer_matmul_parameters(peer, target)
        for measure, times, unit, amount in (
            ("train", train, "rows/s", rows),
            ("decode", decode, "steps/s", generated),
        ):
            (mine, mine_spread), (theirs, theirs_spread) = times[f"ours {target}"], times[f"peer {target}"]
            results.append(
                Result(
                    size, measure, target, unit, amount / mine, amount / theirs, mine_spread, theirs_spread
                )
            )
            if measure == "train":
                work = [split.train_flops(source_rows, target_rows) for split in (ours_split, peer_split)]
                rate_unit = "GFLOP/s"
            else:
                work = [
                    split.step_bytes(weights) * workload.decode_steps
                    for split, weights in ((ours_split, ours_weights), (peer_split, precision))
                ]
                rate_unit = "weight GB/s"
            rates[measure, target] = (work[0] / mine / 1e9, work[1] / theirs / 1e9, rate_unit)
    header = f"{'umt':>11} {'spread':>7} {'x-transformers':>15} {'spread':>7} {'ratio':>7}"
    print(f"{'size':6} {'measure':30} {header}")
    for r in results:
        print(
            f"{size:6} {r.label:30} {r.ours:11.1f} {r.ours_spread:6.0%} {r.peer:15.1f} "
            f"{r.peer_spread:6.0%} {r.ratio:6.2f}x"
        )
        ours_rate, peer_rate, rate_unit = rates[r.measure, r.target]
        label = f"{r.measure} {rate_unit} audio→{r.target}"
        print(
            f"{size:6} {label:30} {ours_rate:11.2f} {'':6} {peer_rate:15.2f} {'':6} "
            f"{ours_rate / peer_rate:6.2f}x"
        )
    for target in TARGETS:
        shapes = matmul_shapes(ours, source_rows, target_rows, target)
        share = PeakShare(size, target, matmul_peak(shapes, device, precision), *rates["train", target][:2])
        peak_shares.append(share)
        label = f"matmul peak GFLOP/s audio→{target}"
        print(f"{size:6} {label:30} {share.peak:11.2f}  (torch.mm of the model's shapes, {precision})")
        label = f"train / matmul peak audio→{target}"
        print(f"{size:6} {label:30} {share.ours:11.1%} {'':6} {share.peer:15.1%}")
    if device.type == "cuda":
        for name in ("umt", "x-transformers"):
            for target in TARGETS:
                gflops = rates["train", target][0 if name == "umt" else 1]
                mfu = gflops / 1e3 / peak_tflops
                label = f"MFU train {name} audio→{target}"
                print(f"{size:6} {label:30} {mfu:11.1%}  (peak {peak_tflops:g} TFLOP/s {precision})")
    return results
