"""Batched translation throughput of :class:`umt.inference.TranslationPipeline`, next to one-at-a-time.

``python -m umt.bench inference [--units N] [--batch-size B] [--max-len L] [--task omr|i2a|amt]
[--device auto] [--d-model D] [--layers N]``. A random-weight Translator over the paper's vocabulary
translates ``N`` sources of random content rows of the task's source modality (generation time
does not depend on what the rows say; lengths vary by +-25 % so the length sorting matters). The
peer is the same pipeline with batch size 1. Figures: units per second and generated rows per
second (a unit stops at EOS or ``max_len``), and the speed-up of batching.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from umt.inference import GenerationConfig, TranslationPipeline, select_device
from umt.models.translator import Translator, TranslatorConfig
from umt.tasks import get_task
from umt.vocab import default_vocabulary


def _sources(vocab, modality: str, count: int, length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = []
    for _ in range(count):
        size = int(length * rng.uniform(0.75, 1.25))
        if modality in ("image", "audio"):
            codes = rng.integers(0, vocab[f"{modality}/cb0"].size, (size, vocab.modality_codebooks(modality)))
            rows = vocab.codes_to_ids(modality, codes)
            if modality == "image":
                height = min(8, vocab.config.max_image_height)
                size -= size % height
                rows = np.concatenate([vocab.special_row(vocab.height(height))[None], rows[:size]])
            sources.append(rows)
        else:
            ids = rng.integers(vocab["lmx/token"].start, vocab["lmx/token"].stop, size)
            sources.append(vocab.single_stream_rows(ids))
    return sources


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench inference")
    parser.add_argument("--task", default="omr", choices=("omr", "i2a", "amt", "a2i", "l2i"))
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--source-len", type=int, default=400)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    vocab = default_vocabulary()
    config = TranslatorConfig(
        d_model=args.d_model,
        n_heads=max(1, args.d_model // 64),
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        ff_dim=4 * args.d_model,
        subdecoder_heads=max(1, args.d_model // 64),
        max_source_len=2048,
        max_target_len=max(args.max_len, 2),
        dropout=0.0,
    )
    device = select_device(args.device)
    pipeline = TranslationPipeline(Translator(config, vocab), vocab, device=device, name="random")
    spec = get_task(args.task)
    sources = _sources(vocab, spec.source, args.units, args.source_len, seed=0)

    def timed(batch_size: int) -> tuple[float, int]:
        generation = GenerationConfig(max_len=args.max_len, batch_size=batch_size)
        pipeline.generate(args.task, sources[: min(2, len(sources))], generation)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        outputs = pipeline.generate(args.task, sources, generation)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, sum(len(o.rows) + 1 for o in outputs)

    # Checking the task needs tokenizers only for loading files: the rows are made here.
    pipeline.check_task = lambda task: None  # type: ignore[method-assign]
    batched_s, batched_rows = timed(args.batch_size)
    single_s, single_rows = timed(1)
    print(
        f"inference {args.task} on {device} (d_model {args.d_model}, {args.layers}+{args.layers} layers, "
        f"{args.units} units, ~{args.source_len} source rows, max_len {args.max_len})"
    )
    print(f"{'':24}{'units/s':>12}{'rows/s':>12}")
    label = f"batch {args.batch_size}"
    print(f"{label:24}{args.units / batched_s:12.2f}{batched_rows / batched_s:12.1f}")
    print(f"{'one at a time (peer)':24}{args.units / single_s:12.2f}{single_rows / single_s:12.1f}")
    print(f"speed-up of batching: {single_s / batched_s:.2f}x")


if __name__ == "__main__":
    run()
