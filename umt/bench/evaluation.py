"""Speed of ``umt eval``: items per second, batched against one item at a time.

``python -m umt.bench eval [--dir DIR] [--items N] [--batch-size B] [--max-len L]``

Runs the quick demo (``umt demo --quick``; or reuses one in ``--dir``), then scores OMR and AMT
on its corpus (its excerpts, test first, up to ``--items``) with the demo's model twice each, in
fresh output folders: with ``--batch-size`` items per generation batch, and with one. Generation
is greedy and capped at ``--max-len`` rows, and batched generation gives the same outputs as one
at a time, so both runs do the same work.

The demo's model was not trained for AMT (its mixture is OMR, MIDI-to-audio and image-to-audio),
but it has the audio and MIDI vocabularies: its transcriptions are meaningless and are not
reported; the work per item (each excerpt's audio tokenized, its windows decoded, the notes
stitched and scored with mir_eval) is what is timed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench eval", description=__doc__)
    parser.add_argument("--dir", help="a quick demo folder to reuse, or where to make one")
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=64)
    args = parser.parse_args(argv)

    from umt.bench import demo_folder

    work = Path(args.dir or tempfile.mkdtemp(prefix="umt-bench-eval-"))
    try:
        demo = demo_folder(work, "quick")
        for task, needs in (("omr", ("image", "lmx")), ("amt", ("audio", "midi"))):
            items = _items(demo / "corpus", args.items, needs)
            title = f"umt eval {task}, {len(items)} items"
            print(f"\n{title:<34} {'items/s':>10} {'vs one at a time':>17}")
            rates = {}
            for batch in (1, args.batch_size):
                out = work / f"eval-{task}-{batch}"
                shutil.rmtree(out, ignore_errors=True)
                seconds = _timed_eval(task, demo, out, batch, args.max_len, items)
                rates[batch] = len(items) / seconds
            for batch, rate in rates.items():
                print(f"{f'batch size {batch}':<34} {rate:>10.2f} {rate / rates[1]:>16.2f}x")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _items(corpus: Path, limit: int, needs: tuple[str, ...]) -> list:
    from umt.evaluate.items import read_items

    items = []
    for split in ("test", "val", "train"):  # a speed figure: any excerpt will do
        try:
            items += read_items(corpus, split, needs=needs)
        except Exception:
            continue
    return items[:limit]


def _timed_eval(task: str, demo: Path, out: Path, batch: int, max_len: int, items: list) -> float:
    from umt.evaluate.run import run_eval
    from umt.evaluate.tasks import EvalContext
    from umt.inference import GenerationConfig, TranslationPipeline

    pipeline = TranslationPipeline.from_pretrained(demo / "run" / "model")
    pipeline.tasks = ()  # lets the demo's model run AMT (see the module docstring)
    generation = GenerationConfig(batch_size=batch, max_len=max_len)
    ctx = EvalContext(pipeline, generation, generation)
    start = time.perf_counter()
    run_eval(task, ctx, items, out, {"bench": batch}, chunk=max(batch, 8), progress=False)
    return time.perf_counter() - start
