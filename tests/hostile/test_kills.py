"""SIGKILL at a random moment, then the same command again: the result is the uninterrupted run's,
with nothing duplicated. One seed runs in the default suite; ``-m slow`` runs a loop of seeds.

Each case runs its command once uninterrupted (the reference and its duration), then in a fresh
output folder: a run killed after a delay drawn (seeded) from the reference's duration, and a rerun.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._subprocess import checkout_env
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
    return files.pop("manifest.jsonl"), {
        k: v for k, v in files.items() if k.endswith((".flac", ".mid", ".midi"))
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kills")
    maestro = make_maestro(root / "maestro-v3.0.0", broken=False)
    data = root / "data"
    _run(["data", "prepare", "maestro", "--root", str(maestro), "--out", str(data), "--no-progress"])
    return {"maestro": maestro, "manifest": data / "manifest.jsonl"}


def _bake_case(inputs: dict[str, Path], tmp_path: Path, seed: int) -> None:
    def argv(out: Path) -> list[str]:
        return ["bake", "midi", "--manifest", str(inputs["manifest"]), "--out", str(out), "--window-seconds",
                "0.5", "--items-per-shard", "2", "--no-progress", "--num-workers", "0"]  # fmt: skip

    duration = _run(argv(tmp_path / "straight"))
    out = tmp_path / "killed"
    _run(argv(out), kill_after=random.Random(seed).uniform(0.0, duration))
    _run(argv(out))
    assert _shard_items(out) == _shard_items(tmp_path / "straight")


def _prepare_case(inputs: dict[str, Path], tmp_path: Path, seed: int) -> None:
    def argv(out: Path) -> list[str]:
        root = str(inputs["maestro"])
        return [
            "data",
            "prepare",
            "maestro",
            "--root",
            root,
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
        ]

    duration = _run(argv(tmp_path / "straight"))
    out = tmp_path / "killed"
    _run(argv(out), kill_after=random.Random(seed).uniform(0.0, duration))
    _run(argv(out))
    manifest, files = _prepared(out)
    reference_manifest, reference_files = _prepared(tmp_path / "straight")
    assert manifest == reference_manifest and files == reference_files
    assert len(manifest.splitlines()) == len({json.loads(line)["key"] for line in manifest.splitlines()})


CASES = {"bake": _bake_case, "prepare": _prepare_case}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_kill_at_a_random_moment_then_a_rerun_gives_the_uninterrupted_result(inputs, tmp_path, case):
    CASES[case](inputs, tmp_path, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_kills_over_many_seeds(inputs, tmp_path, case, seed):
    CASES[case](inputs, tmp_path, seed)
