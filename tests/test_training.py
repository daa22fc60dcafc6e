"""A few CPU training steps with the tiny config on shards made here; exact resume after SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._subprocess import checkout_env
from tests._training_fixtures import make_shards, tiny_vocab

REPO = Path(__file__).resolve().parents[1]


def _overrides(shards: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["experiment=tiny", f"data.root={shards}", f"run_dir={run_dir}", *extra]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"), tiny_vocab())


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return checkpoint


def test_tiny_training_runs_and_logs(shards, tmp_path):
    from umt.training.config import compose
    from umt.training.train import train

    trainer = train(compose(_overrides(shards, tmp_path / "run", "trainer.max_steps=6")))
    assert trainer.global_step == 6
    metrics = (tmp_path / "run" / "logs" / "metrics.csv").read_text()
    header = metrics.splitlines()[0]
    for column in ("train/loss", "train/acc/cb0", "train/acc/cb1", "task/omr/loss", "train/lr"):
        assert column in header, column
    # AMT enters at step 2 and ramps up (tiny mixture): sampled from the pool drawn at step 4.
    assert "task/amt/loss" in header
    checkpoint = _final_weights(tmp_path / "run")
    assert checkpoint["global_step"] == 6
    assert [s["batch_index"] for s in checkpoint["TranslationDataModule"]["samplers"]] == [6]


_TRAIN_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import lightning.pytorch as pl
import torch
from umt.training.config import compose
from umt.training.train import train

torch.set_num_threads(1)  # float sums must be ordered the same in every phase

class KillAfterCheckpoint(pl.Callback):
    # The checkpoint of step M is written at the end of batch M-1; die as batch M starts.
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)

train(compose({overrides!r}), callbacks=[KillAfterCheckpoint()] if {kill_at} is not None else [])
"""


def _train_in_subprocess(tmp_path: Path, overrides: list[str], kill_at: int | None = None) -> int:
    """Train in a fresh process with one intra-op thread (as every phase of the resume test must:
    a different thread count changes the order of float sums, hence the weights)."""
    script = tmp_path / f"train-{len(list(tmp_path.glob('train-*.py')))}.py"
    script.write_text(_TRAIN_SCRIPT.format(repo=str(REPO), kill_at=kill_at, overrides=overrides))
    env = checkout_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    if kill_at is None:
        assert result.returncode == 0, result.stderr[-3000:]
    return result.returncode


@pytest.mark.parametrize("num_workers", [0, 2])
def test_sigkill_and_resume_matches_uninterrupted_run(shards, tmp_path, num_workers):
    common = [
        "trainer.max_steps=6",
        "trainer.checkpoint_every_n_steps=2",
        f"data.num_workers={num_workers}",
        "trainer.accumulate_grad_batches=2",
        "logger.kind=none",
    ]
    # All three phases run in subprocesses with the same environment (one thread each).
    straight = tmp_path / "straight"
    _train_in_subprocess(tmp_path, _overrides(shards, straight, *common))

    resumed = tmp_path / "resumed"
    overrides = _overrides(shards, resumed, *common)
    returncode = _train_in_subprocess(tmp_path, overrides, kill_at=4)
    assert returncode == -9
    interrupted = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert interrupted["global_step"] == 4

    _train_in_subprocess(tmp_path, overrides)  # resume: auto picks up last.ckpt
    a, b = _final_weights(straight), _final_weights(resumed)
    assert a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["TranslationDataModule"] == b["TranslationDataModule"]
    exp_avg_a = a["optimizer_states"][0]["state"][0]["exp_avg"]
    assert torch.equal(exp_avg_a, b["optimizer_states"][0]["state"][0]["exp_avg"])
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from umt.training.train import _atomic_checkpoint_io

    io = _atomic_checkpoint_io()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def exploding_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(RuntimeError):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_export_from_pretrained_and_mismatch_refusal(shards, tmp_path):
    from umt.errors import CheckpointError
    from umt.pretrained import export_checkpoint, from_pretrained
    from umt.training.config import compose
    from umt.training.train import train
    from umt.vocab import default_vocabulary

    run = tmp_path / "run"
    train(compose(_overrides(shards, run, "trainer.max_steps=2", "logger.kind=none")))
    tokenizer_dir = tmp_path / "audio_tok"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "config.json").write_text("{}")
    out = export_checkpoint(
        run / "checkpoints" / "last.ckpt", tmp_path / "export", {"audio": "abc"}, {"audio": tokenizer_dir}
    )
    assert (out / "tokenizers" / "audio" / "config.json").exists()
    assert json.loads((out / "config.json").read_text())["window_seconds"] == 20.0  # data.window_seconds
    model = from_pretrained(out, vocab=tiny_vocab(), tokenizer_fingerprints={"audio": "abc"})
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][f"translator.{key}"]), key
    with pytest.raises(CheckpointError, match="vocabulary"):
        from_pretrained(out, vocab=default_vocabulary())
    with pytest.raises(CheckpointError, match="audio tokenizer abc"):
        from_pretrained(out, tokenizer_fingerprints={"audio": "zzz"})
    with pytest.raises(CheckpointError, match=r"config\.json"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.window_seconds=10", r"audio shards hold 20 s windows, data.window_seconds is 10"),
        (
            "data.max_len.audio=1000",
            r"data.max_len.audio=1000 rows does not fit the model's max_source_len=256",
        ),
    ],
)
def test_limits_and_windows_are_checked_before_training(shards, tmp_path, override, message):
    """A window other than the shards' or a length the model cannot hold is refused at start-up
    (before, a too-long example stopped training mid-run with the model's ValueError)."""
    from umt.errors import UserError
    from umt.training.config import compose
    from umt.training.train import train

    run = tmp_path / "run"
    with pytest.raises(UserError, match=message):
        train(compose(_overrides(shards, run, override, "logger.kind=none")))
    assert not (run / "checkpoints").exists()
