"""Speed of :class:`umt.models.translator.Translator` against an x-transformers encoder-decoder.

``python -m umt.bench translator [--sizes tiny,paper] [--device cpu|cuda] [--threads N]
[--precision fp32|bf16] [--repeats R] ...``

Both models get the same width, depth, heads, feed-forward size, vocabulary size, dropout, batch
and sequence lengths; the peer is ``x_transformers.XTransformer`` (pre-LN, GELU, learned absolute
positions, ``attn_flash=True`` so it uses SDPA too) over single ids. Our model reads ``K``-id
source rows (audio) and, in the "→midi" workload, writes single-stream target rows; the
"→audio" workload also runs our codebook sub-decoder over all ``K`` codebooks. The peer has no
counterpart to the sub-decoder, so its figure is the same single-stream one in both workloads:
"→audio" compares ``K`` codebooks per step (ours) with one id per step (the peer's).

* training: rows/s (source + target rows) of forward + backward + AdamW step.
* decoding: cached greedy decoding steps/s (batch x steps / time), EOS disabled so both run the
  same number of steps; our model's step samples all codebooks the target uses.

Timing is wall-clock (``time.perf_counter``, after synchronising on CUDA): process CPU time
counts the spinning of idle worker threads, which on shared cores swings the ratios wildly. On
CPU the benchmark runs on ``--threads`` threads (default 1, so figures are reproducible on
shared machines). Every timed function gets one warm-up call; then ours and the peer's run in
``--repeats`` interleaved rounds (A B B A ..., so neither always goes first) and each figure is
the median over the rounds, with the spread ``(max - min) / median`` beside it.

``--precision bf16`` (the default on CUDA) runs both models under bf16 autocast, ``fp32`` in
float32. MFU is printed only on a GPU: ``6 x non-embedding parameters x rows`` training FLOPs
against ``--peak-tflops`` (default: the H100/H200 SXM dense peak of the chosen precision).

The final summary table gives, per size and workload, the ratio (ours / peer) and whether it
meets the goal: training >= 1.3x, cached decoding >= 2x.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

SIZES = ("tiny", "paper")
TARGETS = ("midi", "audio")
GOALS = {"train": 1.3, "decode": 2.0}
"""Minimum ratio (ours / peer) per measure."""
PEAK_TFLOPS = {"bf16": 989.0, "fp32": 67.0}
"""H100/H200 SXM dense peaks (bf16 tensor cores; fp32 without TF32, PyTorch's default)."""


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
    import torch

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
    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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

    from umt.vocab import MODALITIES

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
        "src_modality": torch.full((batch,), MODALITIES.index("audio"), device=device),
        "tgt_modality": torch.full((batch,), MODALITIES.index(target), device=device),
    }


def _train_step(optimiser, compute_loss: Callable, autocast: Callable) -> Callable[[], None]:
    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast():
            loss = compute_loss()
        loss.backward()
        optimiser.step()

    return step


def _non_embedding_parameters(model) -> int:
    """Parameters that take part in matrix products (lookup tables do no FLOPs)."""
    import torch

    embedding = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run(argv: list[str]) -> None:
    import torch

    from umt.vocab import default_vocabulary

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
    for size in sizes:
        base = DEFAULT_WORKLOADS[size]
        workload = Workload(
            batch=args.batch or base.batch,
            source_len=args.source_len or base.source_len,
            target_len=args.target_len or base.target_len,
            train_steps=args.train_steps or base.train_steps,
            decode_steps=args.decode_steps or base.decode_steps,
        )
        results += bench_size(size, workload, vocab, device, precision, args.repeats, peak)
    print("\nsummary (ratio = umt / x-transformers; →audio decoding: K codebooks vs the peer's one id)")
    print(summary_table(results))


def bench_size(
    size: str, workload: Workload, vocab, device, precision: str, repeats: int, peak_tflops: float
) -> list[Result]:
    """Time one size: training then decoding, ours and the peer's interleaved; prints and returns."""
    import torch

    from umt.vocab import MODALITIES

    torch.manual_seed(0)
    autocast = lambda: _autocast(device, precision)  # noqa: E731
    batches = {target: _inputs(vocab, workload, device, target) for target in TARGETS}
    ours, config = _ours(size, vocab, device)
    peer = _peer(config, vocab, workload, device)
    midi = batches["midi"]
    src, tgt, mask = midi["src"][..., 0], midi["tgt"][..., 0], midi["src_mask"]

    # Training: both models and their optimisers are alive, so rounds can alternate.
    ours.train()
    peer.train()
    ours_optimiser = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    peer_optimiser = torch.optim.AdamW(peer.parameters(), lr=1e-4)
    train_fns: dict[str, Callable[[], object]] = {
        f"ours {target}": _train_step(ours_optimiser, lambda b=batch: ours.loss(b)[0], autocast)
        for target, batch in batches.items()
    }
    train_fns["peer"] = _train_step(peer_optimiser, lambda: peer(src, tgt, mask=mask), autocast)
    train = interleaved_medians(train_fns, workload.train_steps, repeats, device)
    del ours_optimiser, peer_optimiser, train_fns

    # Decoding: greedy, EOS never chosen so both run decode_steps steps.
    ours.eval()
    peer.eval()
    with torch.no_grad():
        for modality in MODALITIES:
            ours.head.bias[vocab.eos(modality)] = -1e4
    start_ids = torch.full((workload.batch, 1), vocab.sos("midi"), device=device)

    def ours_decode(target: str) -> Callable[[], object]:
        modality = torch.full((workload.batch,), MODALITIES.index(target), device=device)

        def decode() -> object:
            with autocast():
                return ours.generate(
                    midi["src"],
                    midi["src_mask"],
                    midi["src_modality"],
                    modality,
                    workload.decode_steps + 1,
                    temperature=0.0,
                )

        return decode

    def peer_decode() -> object:
        with autocast(), torch.no_grad():
            return peer.generate(
                src, start_ids, workload.decode_steps, mask=mask, temperature=0.0, cache_kv=True
            )

    decode_fns = {f"ours {target}": ours_decode(target) for target in TARGETS}
    decode_fns["peer"] = peer_decode
    decode = interleaved_medians(decode_fns, 1, repeats, device)

    print(
        f"\n[{size}] d={config.d_model} layers={config.encoder_layers}+{config.decoder_layers} "
        f"heads={config.n_heads} ff={config.ff_dim}; params umt {_count(ours) / 1e6:.1f}M, "
        f"x-transformers {_count(peer) / 1e6:.1f}M; batch {workload.batch}, source {workload.source_len} "
        f"rows, target {workload.target_len} rows, {workload.decode_steps} decoding steps"
    )
    rows = workload.batch * (workload.source_len + workload.target_len)
    generated = workload.batch * workload.decode_steps
    results = []
    for target in TARGETS:
        for measure, times, unit, amount in (
            ("train", train, "rows/s", rows),
            ("decode", decode, "steps/s", generated),
        ):
            (mine, mine_spread), (theirs, theirs_spread) = times[f"ours {target}"], times["peer"]
            results.append(
                Result(
                    size, measure, target, unit, amount / mine, amount / theirs, mine_spread, theirs_spread
                )
            )
    header = f"{'umt':>11} {'spread':>7} {'x-transformers':>15} {'spread':>7} {'ratio':>7}"
    print(f"{'size':6} {'measure':30} {header}")
    for r in results:
        print(
            f"{size:6} {r.label:30} {r.ours:11.1f} {r.ours_spread:6.0%} {r.peer:15.1f} "
            f"{r.peer_spread:6.0%} {r.ratio:6.2f}x"
        )
    if device.type == "cuda":
        for name, model in (("umt", ours), ("x-transformers", peer)):
            flops = 6 * _non_embedding_parameters(model) * rows
            for target in TARGETS if name == "umt" else ("midi",):
                mfu = flops / train[f"ours {target}" if name == "umt" else "peer"][0] / 1e12 / peak_tflops
                label = f"MFU train {name}" + (f" audio→{target}" if name == "umt" else "")
                print(f"{size:6} {label:30} {mfu:11.1%}  (peak {peak_tflops:g} TFLOP/s {precision})")
    return results
