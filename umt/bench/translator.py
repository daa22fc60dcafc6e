"""Speed of :class:`umt.models.translator.Translator` against an x-transformers encoder-decoder.

``python -m umt.bench translator [--sizes tiny,paper] [--device cpu|cuda] ...``

Both models get the same width, depth, heads, feed-forward size, vocabulary size, dropout, batch
and sequence lengths; the peer is ``x_transformers.XTransformer`` (pre-LN, GELU, learned absolute
positions, ``attn_flash=True`` so it uses SDPA too) over single ids. Our model reads ``K``-id
source rows (audio) and, in the "→midi" workload, writes single-stream target rows; the
"→audio" workload also runs our codebook sub-decoder over all ``K`` codebooks (the peer has no
counterpart, so its figure is the same single-stream one).

Timing on CPU is process CPU time (robust to other jobs on shared cores).

* training: rows/s (source + target rows) of forward + backward + AdamW step.
* decoding: cached greedy decoding steps/s (batch x steps / time), EOS disabled so both run the
  same number of steps; our model's step samples all codebooks the target uses.

MFU is printed only on a GPU (from ``6 x parameters x rows`` training FLOPs and ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

SIZES = ("tiny", "paper")


@dataclass
class Workload:
    batch: int
    source_len: int
    target_len: int
    train_steps: int
    decode_steps: int


DEFAULT_WORKLOADS = {
    "tiny": Workload(batch=8, source_len=256, target_len=128, train_steps=6, decode_steps=64),
    "paper": Workload(batch=2, source_len=128, target_len=64, train_steps=1, decode_steps=8),
}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, steps: int, device) -> float:
    """Seconds per call of ``fn`` after one warm-up call.

    On CPU this is the process's CPU time (``time.process_time``), which other jobs on shared
    cores do not inflate; on a GPU it is wall time after synchronising.
    """
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    fn()
    _sync(device)
    start = clock()
    for _ in range(steps):
        fn()
    _sync(device)
    return (clock() - start) / steps


def _ours(size: str, vocab, device):
    from umt.models.translator import Translator, TranslatorConfig

    config = TranslatorConfig.tiny() if size == "tiny" else TranslatorConfig.paper()
    return Translator(config, vocab).to(device), config


def _peer(config, vocab, workload: Workload, device):
    from x_transformers import XTransformer

    common = dict(
        depth=None,
        heads=config.n_heads,
        ff_mult=config.ff_dim // config.d_model,
        attn_flash=True,
        attn_dropout=config.dropout,
        ff_dropout=config.dropout,
        num_tokens=vocab.size,
    )
    kwargs = {}
    for prefix, depth, max_len in (
        ("enc_", config.encoder_layers, workload.source_len),
        ("dec_", config.decoder_layers, workload.target_len + workload.decode_steps + 1),
    ):
        for key, value in {**common, "depth": depth, "max_seq_len": max_len}.items():
            kwargs[prefix + key] = value
    return XTransformer(dim=config.d_model, **kwargs).to(device)


def _inputs(vocab, workload: Workload, device, target: str):
    import numpy as np
    import torch

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
    from umt.vocab import MODALITIES

    return {
        "src": src.to(device),
        "src_mask": torch.ones(batch, source_len, dtype=torch.bool, device=device),
        "tgt": tgt.to(device),
        "tgt_mask": torch.ones(batch, target_len, dtype=torch.bool, device=device),
        "src_modality": torch.full((batch,), MODALITIES.index("audio"), device=device),
        "tgt_modality": torch.full((batch,), MODALITIES.index(target), device=device),
    }


def _train_step(model, optimiser, compute_loss):
    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        compute_loss().backward()
        optimiser.step()

    return step


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run(argv: list[str]) -> None:
    import torch

    from umt.vocab import default_vocabulary

    parser = argparse.ArgumentParser(prog="python -m umt.bench translator")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: tiny, paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="override the batch of every size")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--decode-steps", type=int)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak for MFU (H100 bf16 dense)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    vocab = default_vocabulary()
    print(
        f"translator benchmark on {device} ({torch.get_num_threads()} threads), vocabulary {vocab.size} ids"
    )
    for size in args.sizes.split(","):
        if size not in SIZES:
            raise SystemExit(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
        base = DEFAULT_WORKLOADS[size]
        workload = Workload(
            batch=args.batch or base.batch,
            source_len=base.source_len,
            target_len=base.target_len,
            train_steps=args.train_steps or base.train_steps,
            decode_steps=args.decode_steps or base.decode_steps,
        )
        _bench_size(size, workload, vocab, device, args.peak_tflops)


def _measure_peer(config, vocab, workload: Workload, device, midi) -> tuple[float, float]:
    """Seconds per training step and per decoding call of the x-transformers model."""
    import torch

    peer = _peer(config, vocab, workload, device).train()
    optimiser = torch.optim.AdamW(peer.parameters(), lr=1e-4)
    src, tgt, mask = midi["src"][..., 0], midi["tgt"][..., 0], midi["src_mask"]
    train = _time(
        _train_step(peer, optimiser, lambda: peer(src, tgt, mask=mask)), workload.train_steps, device
    )
    del optimiser
    peer.eval()
    start_ids = torch.full((workload.batch, 1), vocab.sos("midi"), device=device)
    decode = _time(
        lambda: peer.generate(
            src, start_ids, workload.decode_steps, mask=mask, temperature=0.0, cache_kv=True
        ),
        1,
        device,
    )
    return train, decode


def _measure_ours(ours, vocab, workload: Workload, device, batches) -> dict[str, tuple[float, float]]:
    """Seconds per training step and per decoding call of our model, per target modality."""
    import torch

    from umt.vocab import MODALITIES

    optimiser = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    ours.train()
    train = {
        target: _time(
            _train_step(ours, optimiser, lambda b=batch: ours.loss(b)[0]), workload.train_steps, device
        )
        for target, batch in batches.items()
    }
    del optimiser
    ours.eval()
    with torch.no_grad():
        for modality in MODALITIES:
            ours.head.bias[vocab.eos(modality)] = -1e4  # never stop early: both run decode_steps steps
    midi = batches["midi"]
    decode = {}
    for target in batches:
        modality = torch.full((workload.batch,), MODALITIES.index(target), device=device)
        decode[target] = _time(
            lambda m=modality: ours.generate(
                midi["src"],
                midi["src_mask"],
                midi["src_modality"],
                m,
                workload.decode_steps + 1,
                temperature=0.0,
            ),
            1,
            device,
        )
    return {target: (train[target], decode[target]) for target in batches}


def _bench_size(size: str, workload: Workload, vocab, device, peak_tflops: float) -> None:
    import torch

    torch.manual_seed(0)
    batches = {target: _inputs(vocab, workload, device, target) for target in ("midi", "audio")}
    ours, config = _ours(size, vocab, device)
    ours_params = _count(ours)
    # One model (and its optimiser state) in memory at a time: the paper size is ~0.4 B parameters.
    ours_times = _measure_ours(ours, vocab, workload, device, batches)
    del ours
    peer_params = _count(_peer(config, vocab, workload, torch.device("meta")))
    peer_train, peer_decode = _measure_peer(config, vocab, workload, device, batches["midi"])
    print(
        f"\n[{size}] d={config.d_model} layers={config.encoder_layers}+{config.decoder_layers} "
        f"heads={config.n_heads} ff={config.ff_dim}; params umt {ours_params / 1e6:.1f}M, "
        f"x-transformers {peer_params / 1e6:.1f}M; batch {workload.batch}, source {workload.source_len} "
        f"rows, target {workload.target_len} rows, {workload.decode_steps} decoding steps"
    )
    print(f"{'size':6} {'measure':28} {'umt':>12} {'x-transformers':>15} {'ratio':>7}")
    rows = workload.batch * (workload.source_len + workload.target_len)
    generated = workload.batch * workload.decode_steps
    for target, (train, decode) in ours_times.items():
        for label, mine, theirs in (
            (f"train rows/s audio→{target}", rows / train, rows / peer_train),
            (f"decode steps/s audio→{target}", generated / decode, generated / peer_decode),
        ):
            print(f"{size:6} {label:28} {mine:12.1f} {theirs:15.1f} {mine / theirs:6.2f}x")
        if device.type == "cuda":
            mfu = 6 * ours_params * rows / train / 1e12 / peak_tflops
            print(f"{size:6} {'MFU train audio→' + target:28} {mfu:12.1%}")
