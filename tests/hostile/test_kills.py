"""SIGKILL at a random moment, then the same command again: the result is the uninterrupted run's,
with nothing duplicated. One seed runs in the default suite; ``-m slow`` runs a loop of seeds.

Each case runs its command once uninterrupted (the reference and its duration, kept for all seeds),
then in a fresh output folder: a run killed after a delay drawn (seeded) from the reference's
duration, and a rerun. The commands: bake, data prepare, corpus build, train (a checkpoint every
step), and, in the slow loop only (a quick demo takes minutes), the demo.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._subprocess import checkout_env
from tests._training_fixtures import make_shards, tiny_vocab
from tests.test_prepare import make_maestro

SEEDS = range(1, 9)


def _run(argv: list[str], kill_after: float | None = None) -> float:
    """Run ``umt ARGV`` in a child; with ``kill_after``, SIGKILL it then (if still running)."""
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "umt", *argv],
        env=checkout_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if kill_after is None:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err.decode()[-2000:]
    else:
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
        child.stderr.close()
    return time.monotonic() - started


def _shard_items(folder: Path) -> list[tuple[str, int, list]]:
    from umt.data.shards import ShardSet

    shards = ShardSet(folder)
    items = sorted((key, variant, shards.get(key, variant).tolist()) for key, variant in shards.items())
    assert len(items) == len(set((key, variant) for key, variant, _ in items))  # nothing twice
    return items


def _prepared(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    keys = [json.loads(line)["key"] for line in files["manifest.jsonl"].splitlines()]
    assert len(keys) == len(set(keys))  # nothing twice
    return files.pop("manifest.jsonl"), {
        k: v for k, v in files.items() if k.endswith((".flac", ".mid", ".midi"))
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kills")
    maestro = make_maestro(root / "maestro-v3.0.0", broken=False)
    data = root / "data"
    _run(["data", "prepare", "maestro", "--root", str(maestro), "--out", str(data), "--no-progress"])
    shards = make_shards(root / "shards", tiny_vocab())
    return {"maestro": maestro, "manifest": data / "manifest.jsonl", "shards": shards}


class Case:
    """One command killed and rerun: ``argv(out)`` runs it into ``out``; ``result(out)`` is what an
    interrupted-then-rerun run must reproduce exactly (and checks that nothing is there twice)."""

    def __init__(self, argv: Callable[[Path], list[str]], result: Callable[[Path], object]) -> None:
        self.argv, self.result = argv, result


def _cases(inputs: dict[str, Path]) -> dict[str, Case]:
    maestro, manifest, shards = str(inputs["maestro"]), str(inputs["manifest"]), str(inputs["shards"])
    return {
        "bake": Case(
            lambda out: ["bake", "midi", "--manifest", manifest, "--out", str(out), "--window-seconds",
                         "0.5", "--items-per-shard", "2", "--no-progress", "--num-workers", "0"],
            _shard_items,
        ),
        "prepare": Case(
            lambda out: ["data", "prepare", "maestro", "--root", maestro, "--out", str(out), "--workers", "1",
                         "--no-progress"],
            _prepared,
        ),
        "corpus": Case(
            lambda out: ["corpus", "build", "--out", str(out), "--sources", "none", "--procedural", "3",
                         "--excerpts-per-piece", "2", "--workers", "1", "--no-progress"],
            _corpus,
        ),
        "train": Case(
            lambda out: ["train", "experiment=tiny", f"data.root={shards}", f"run_dir={out}",
                         "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=1", "data.num_workers=0",
                         "logger.kind=none"],
            _trained,
        ),
        "demo": Case(
            lambda out: ["demo", "--quick", "--no-progress", "--workers", "1", "--out", str(out)], _demo
        ),
    }  # fmt: skip


def _corpus(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    manifest = (folder / "manifest.jsonl").read_bytes()
    keys = [json.loads(line)["key"] for line in manifest.splitlines()]
    assert len(keys) == len(set(keys)) > 0
    assert (folder / "failures.jsonl").read_bytes() == b""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    made = (".lmx", ".mid", ".png", ".musicxml", ".wav")
    return manifest, {k: v for k, v in files.items() if k.endswith(made)}


def _trained(run_dir: Path) -> dict[str, object]:
    import torch

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 6
    return {
        "weights": {key: value.tolist() for key, value in checkpoint["state_dict"].items()},
        "optimizer": repr(checkpoint["optimizer_states"]),
        "data": checkpoint["TranslationDataModule"],
        "schedulers": checkpoint["lr_schedulers"],
    }


def _demo(folder: Path) -> dict[str, object]:
    """The quality figures and the model's weights (timings aside)."""
    from safetensors.numpy import load_file

    metrics = json.loads((folder / "eval" / "metrics.json").read_text())["metrics"]
    weights = load_file(str(folder / "run" / "model" / "model.safetensors"))
    assert (folder / "report.html").is_file()
    figures = {k: v for k, v in metrics.items() if "seconds" not in k and "per_second" not in k}
    return {"metrics": figures, "weights": {k: v.tolist() for k, v in weights.items()}}


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory) -> dict[str, tuple[object, float]]:
    """Each case's uninterrupted result and duration, computed once for every seed."""
    cache: dict[str, tuple[object, float]] = {}

    def reference(name: str) -> tuple[object, float]:
        if name not in cache:
            case = _cases(inputs)[name]
            out = tmp_path_factory.mktemp(f"straight-{name}") / "out"
            duration = _run(case.argv(out))
            cache[name] = (case.result(out), duration)
        return cache[name]

    return reference


def _kill_and_rerun(inputs, references, tmp_path: Path, name: str, seed: int) -> None:
    case = _cases(inputs)[name]
    expected, duration = references(name)
    out = tmp_path / "killed"
    _run(case.argv(out), kill_after=random.Random(seed).uniform(0.0, duration))
    _run(case.argv(out))
    assert case.result(out) == expected


DEFAULT = ["bake", "corpus", "prepare", "train"]


@pytest.mark.parametrize("case", DEFAULT)
def test_a_kill_at_a_random_moment_then_a_rerun_gives_the_uninterrupted_result(
    inputs, references, tmp_path, case
):
    _kill_and_rerun(inputs, references, tmp_path, case, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", [*DEFAULT, "demo"])
def test_kills_over_many_seeds(inputs, references, tmp_path, case, seed):
    _kill_and_rerun(inputs, references, tmp_path, case, seed)
