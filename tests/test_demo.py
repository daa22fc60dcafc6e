"""The demo (``umt demo``, the README's main command): end to end in its quick preset, resumable,
refusing mixed settings; and the evaluation and report helpers it is made of."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from umt.cli import main as umt_main

pytest.importorskip("verovio")
pytest.importorskip("cairosvg")
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="fluidsynth not installed (Debian package 'fluidsynth')"
)


# ----------------------------------------------------------------------------- configuration
def test_presets_fit_their_tokenizers_to_the_vocabulary():
    from umt.cli.tokenizer import compose_tokenizer_config
    from umt.demo import PRESETS, DemoContext, demo_vocabulary, image_tokenizer_config, translator_config

    vocab = demo_vocabulary()
    image = compose_tokenizer_config("rqvae_demo", [])
    audio = compose_tokenizer_config("dac_demo", [])
    assert image.model.n_embed == vocab.codebook_range("image", 0).size
    assert image.model.num_codebooks == vocab.modality_codebooks("image")
    assert audio.model.codebook_size == vocab.codebook_range("audio", 0).size
    for name, settings in PRESETS.items():
        context = DemoContext(out=Path("/tmp/x"), settings=settings)
        # the image tokenizer normalises staves to the height the corpus draws them at
        tokenizer = image_tokenizer_config(context)
        assert tokenizer.preprocess.target_staff_height == settings.staff_height, name
        assert tokenizer.trainer.max_steps == settings.image_tokenizer_steps, name
        cfg = translator_config(context)
        assert cfg.trainer.max_steps == settings.translator_steps, name
        starts = [entry.start for entry in cfg.mixture.entries]
        # the curriculum keeps its order and shape at every budget: OMR, then M2A, then I2A
        assert starts[0] == 0 < starts[1] < starts[2] < settings.translator_steps, name
        assert [entry.task for entry in cfg.mixture.entries] == ["omr", "m2a", "i2a"]
        # OMR outweighs each audio task: its short LMX targets are otherwise a few % of the loss
        # (the quick preset, a smoke test of 24 steps, keeps equal weights so every task comes up)
        weights = [entry.weight for entry in cfg.mixture.entries]
        assert weights[0] == settings.omr_weight and weights[1:] == [1.0, 1.0], name
        if name != "quick":
            assert settings.omr_weight >= 4, name
    # the default's staves differ from the YAML's, so the check above sees the demo's own value
    assert PRESETS["default"].staff_height != image.preprocess.target_staff_height


def test_unknown_preset_and_setting_are_one_line_errors(capsys, tmp_path):
    assert umt_main(["demo", "--preset", "quik", "--out", str(tmp_path / "d")]) == 2
    assert "did you mean 'quick'" in capsys.readouterr().err
    assert umt_main(["demo", "--quick", "--translator-steps", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--translator-steps must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# -------------------------------------------------------------------------------- helpers
def test_mel_distance_is_zero_for_identical_audio_and_grows_with_difference():
    from umt.evaluation import MelDistance

    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100

    def tone(hz: float) -> np.ndarray:  # a tone over a faint noise floor (no empty mel bins)
        noise = 0.01 * rng.standard_normal(len(t))
        return (0.3 * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)

    reference = tone(440)
    mel = MelDistance(44100)
    assert mel(reference, reference) == pytest.approx(0.0, abs=1e-6)
    assert 0 < mel(tone(440), reference) < mel(tone(660), reference)
    # shorter estimates are padded with silence, longer ones cut
    longer = np.concatenate([reference, reference])
    assert mel(reference[:22050], reference) > mel(longer, reference) == pytest.approx(0.0, abs=1e-6)


def test_corpus_excerpts_needs_a_built_corpus(tmp_path):
    from umt.errors import UserError
    from umt.evaluation import corpus_excerpts

    with pytest.raises(UserError, match="not a built corpus"):
        corpus_excerpts(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"key": "a", "split": "train", "png": "a.png", "lmx": "a.lmx", "mid": "a.mid"}) + "\n"
    )
    with pytest.raises(UserError, match="no 'test' excerpts"):
        corpus_excerpts(tmp_path)
    assert [e.key for e in corpus_excerpts(tmp_path, "train")] == ["a"]


def test_piano_roll_and_curves_draw_what_they_are_given():
    from umt.report import curve_svg, piano_roll_svg
    from umt.tokenizers.midi import Note

    notes = [Note(60, 0, False, 0.0, 0.5), Note(67, 0, False, 0.5, 1.0)]
    svg = piano_roll_svg(notes, 1.0, "roll")
    assert svg.count("<rect") == 2 and "2 notes, pitches 60-67" in svg
    chart = curve_svg({"loss": [(0, 2.0), (10, 1.0)], "empty": []}, "curve")
    assert chart.count("<polyline") == 1 and "step 10" in chart
    assert "nothing logged" in curve_svg({}, "none")


def test_cascade_notes_follow_the_given_tempo():
    from tests._inference_fixtures import melody_musicxml
    from umt.inference import musicxml_to_notes

    slow = musicxml_to_notes(melody_musicxml(), qpm=60.0)
    fast = musicxml_to_notes(melody_musicxml(), qpm=120.0)
    assert [n.pitch for n in slow] == [n.pitch for n in fast]
    assert slow[1].onset == pytest.approx(1.0) and fast[1].onset == pytest.approx(0.5)


# ---------------------------------------------------------------------------- end to end
QUICK = ["demo", "--quick", "--no-progress", "--workers", "2"]


def run_umt(args: list[str], cwd: Path, mask: int = 0o022, **kwargs) -> subprocess.CompletedProcess:
    """``python -m umt ARGS`` as a user would type it, standing in ``cwd``, under umask ``mask``."""
    return subprocess.run(
        [sys.executable, "-m", "umt", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(mask),
        **kwargs,
    )


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> Path:
    """The README's demo command in its quick form, typed in a fresh folder with a relative --out
    (what a new user does), under umask 002 (a lab's group-shared server)."""
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (Debian package 'fluidsynth')")
    here = tmp_path_factory.mktemp("newcomer")
    done = run_umt([*QUICK, "--out", "runs/q"], cwd=here, mask=0o002)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "runs/q/report.html"
    return here / "runs" / "q"


@needs_fluidsynth
def test_every_file_the_demo_writes_honours_the_umask(quick_demo):
    modes = {p.relative_to(quick_demo): stat.S_IMODE(p.stat().st_mode) for p in quick_demo.rglob("*")}
    assert len(modes) > 100  # corpus, tokenizers, shards, checkpoints, model, eval, report
    wrong = {str(p): oct(m) for p, m in modes.items() if m != (0o775 if (quick_demo / p).is_dir() else 0o664)}
    assert not wrong


@needs_fluidsynth
def test_the_demo_is_reproducible(tmp_path):
    """The same preset and seed give the same figures and the same weights, on two threads (the
    suite's workers run one), from an absolute --out in another working directory."""
    two_threads = {**os.environ, "OMP_NUM_THREADS": "2"}
    runs = [tmp_path / "first", tmp_path / "second"]
    for out in runs:
        done = run_umt([*QUICK, "--out", str(out)], cwd=tmp_path, env=two_threads)
        assert done.returncode == 0, done.stderr[-2000:]
    first, second = (json.loads((d / "eval" / "metrics.json").read_text()) for d in runs)
    assert first["metrics"] == second["metrics"]
    assert first["excerpts"] == second["excerpts"]  # every prediction too
    for weights in ("run/model/model.safetensors", "tokenizers/image/tokenizer/model.safetensors",
                    "tokenizers/audio/tokenizer/model.safetensors"):  # fmt: skip
        assert (runs[0] / weights).read_bytes() == (runs[1] / weights).read_bytes(), weights


@needs_fluidsynth
def test_translate_export_and_eval_take_paths_relative_to_where_the_user_stands(quick_demo):
    """The commands after the demo, typed in the folder the demo ran in, every path relative."""
    here = quick_demo.parent.parent
    image = next((quick_demo / "corpus" / "test").rglob("*.png")).relative_to(here)
    model = "runs/q/run/model"
    done = run_umt(["translate", "--checkpoint", model, "--task", "omr", str(image), "-o", "out",
                    "--max-len", "16", "--quiet"], cwd=here)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (here / "out" / f"{image.stem}.lmx").is_file()
    tokenizers = ["--tokenizer", f"{model}/tokenizers/image", "--tokenizer", f"{model}/tokenizers/audio"]
    checkpoint = "runs/q/run/checkpoints/last.ckpt"
    exported = run_umt(["export", checkpoint, "--out", "again", *tokenizers], cwd=here)
    assert exported.returncode == 0, exported.stderr[-2000:]
    weights = [(here / folder / "model.safetensors").read_bytes() for folder in ("again", model)]
    assert weights[0] == weights[1]
    script = Path(__file__).resolve().parents[1] / "eval" / "omr.py"
    evaluated = subprocess.run(
        [sys.executable, str(script), "--checkpoint", "again", "--data", "runs/q/corpus",
         "--limit", "1", "--max-len", "16", "--out", "figures/omr", "--no-progress"],
        cwd=here, capture_output=True, text=True,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads((here / "figures" / "omr" / "metrics.json").read_text())
    assert metrics["test_sets"]["corpus"]["items"] == 1


@needs_fluidsynth
def test_a_killed_demo_with_relative_paths_finishes_when_rerun(tmp_path):
    """SIGKILL while the tokenizers train (the corpus and lists of files already written with
    paths relative to the user's folder), then the same command again."""
    command = [sys.executable, "-m", "umt", *QUICK, "--out", "runs/k"]
    demo = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "runs/k/tokenizers/image-files.txt").exists() and time.monotonic() < deadline:
        if demo.poll() is not None:
            pytest.fail("the demo ended before the tokenizer stage")
        time.sleep(0.05)
    demo.kill()
    demo.wait()
    assert not (tmp_path / "runs/k/report.html").exists()
    done = run_umt([*QUICK, "--out", "runs/k"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "runs/k/report.html").is_file()
    assert json.loads((tmp_path / "runs/k/eval/metrics.json").read_text())["metrics"]["excerpts"] == 2


@needs_fluidsynth
def test_a_demo_stopped_by_sigterm_while_training_says_so_and_finishes_when_rerun(tmp_path):
    """SIGTERM while the Translator trains: Lightning stops at the next step; the command must end
    with a non-zero status (not 0, as Lightning's own exit would be) and the rerun must finish."""
    command = [sys.executable, "-m", "umt", *QUICK, "--out", "runs/t"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        demo = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 180
        while "umt demo: translator ..." not in log.read_text() and time.monotonic() < deadline:
            if demo.poll() is not None:
                pytest.fail("the demo ended before the translator stage")
            time.sleep(0.05)
        time.sleep(1.0)  # into the training steps
        demo.send_signal(signal.SIGTERM)
        status = demo.wait(timeout=120)
    assert status == 143, log.read_text()[-2000:]
    assert "umt: interrupted (SIGTERM)" in log.read_text()
    assert not (tmp_path / "runs/t/report.html").exists()
    done = run_umt([*QUICK, "--out", "runs/t"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "runs/t/report.html").is_file()


def test_an_unwritable_out_is_one_line_and_writes_nothing(tmp_path, capsys):
    """An --out that cannot be made (below a file: refused even to root)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    assert umt_main([*QUICK, "--out", str(blocker / "demo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"umt: error: {blocker}") and "Not a directory" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    from umt.utils import io

    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync_until_full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 3:  # the settings and the first corpus files fit; then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", fsync_until_full)
    out = tmp_path / "demo"
    assert umt_main(["demo", "--quick", "--no-progress", "--workers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("umt: error: ") and "No space left on device" in err[-1]
    assert calls["n"] > 3
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@needs_fluidsynth
def test_quick_demo_writes_a_report_with_measured_numbers(quick_demo):
    report = (quick_demo / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((quick_demo / "eval" / "metrics.json").read_text())["metrics"]
    settings = json.loads((quick_demo / "demo.json").read_text())["settings"]
    assert metrics["excerpts"] == settings["eval_excerpts"] == 2
    # the SER is the one of the predictions listed beside it, against the held-out gold LMX
    from umt.evaluation import corpus_excerpts, read_lmx
    from umt.metrics.ser import symbol_error_rate

    listed = json.loads((quick_demo / "eval" / "metrics.json").read_text())["excerpts"]
    held_out = corpus_excerpts(quick_demo / "corpus", "test", limit=2)
    assert [e["key"] for e in listed] == [e.key for e in held_out]
    recomputed = symbol_error_rate([read_lmx(e.lmx) for e in held_out], [e["predicted_lmx"] for e in listed])
    assert metrics["omr_ser"] == pytest.approx(recomputed.ser)
    # ... scored by `umt eval omr`, whose files and table the demo leaves in eval/omr
    scored = json.loads((quick_demo / "eval" / "omr" / "metrics.json").read_text())
    assert scored["task"] == "omr" and scored["test_sets"]["corpus"]["ser"] == metrics["omr_ser"]
    table = (quick_demo / "eval" / "omr" / "table.md").read_text()
    assert f"| corpus | 2 | {metrics['omr_ser']:.2f} |" in table
    assert "umt eval omr" in report
    assert 0.0 <= metrics["cascade_onset_f1"] <= 1.0
    # every metric in the JSON is the one printed in the report
    assert f"{metrics['omr_ser']:.1f}</td>" in report
    assert f"{metrics['image_round_trip_ink_f1']:.3f}</td>" in report
    assert 0 < metrics["image_round_trip_ink_f1"] <= 1
    assert f"{metrics['mel_distance_tokenizer']:.3f}</td>" in report
    assert f"{metrics['mel_distance_silence']:.3f}</td>" in report
    for key in ("omr_loss_own_image", "omr_loss_other_image"):
        assert metrics[key] > 0 and f"{metrics[key]:.3f}</td>" in report
    # inputs, reference audio, curves and piano rolls are inlined: the page stands alone
    assert report.count("data:image/png;base64,") >= 2
    assert report.count("data:audio/wav;base64,") >= 2 * 2  # reference + tokenizer round trip each
    assert "<polyline" in report and "reference MIDI" in report and "nothing logged" not in report
    assert report.count("input through the image tokenizer") == 2
    assert not re.search(r'src="(?!data:)', report)
    # the budget: every stage's time is recorded and shown
    timings = json.loads((quick_demo / "timings.json").read_text())
    assert set(timings) == {
        "corpus",
        "image tokenizer",
        "audio tokenizer",
        "bake",
        "translator",
        "evaluation",
        "report",
    }
    before_report = sum(seconds for stage, seconds in timings.items() if stage != "report")
    assert f"{before_report:.1f} s" in report
    model = json.loads((quick_demo / "run" / "model" / "config.json").read_text())
    assert model["global_step"] == settings["translator_steps"]
    assert model["tasks"] == ["omr", "m2a", "i2a"]
    assert set(model["tokenizers"]) == {"image", "audio"}


def test_the_corpus_and_the_image_tokenizer_share_the_demo_staff_height(quick_demo):
    from PIL import Image

    from umt.data.corpus_builder import read_manifest
    from umt.data.render import staff_heights

    wanted = json.loads((quick_demo / "demo.json").read_text())["settings"]["staff_height"]
    config = json.loads((quick_demo / "tokenizers/image/tokenizer/config.json").read_text())
    assert config["preprocess"]["target_staff_height"] == wanted
    record = read_manifest(quick_demo / "corpus")[0]
    heights = staff_heights(np.asarray(Image.open(quick_demo / "corpus" / record["png"]).convert("L")))
    assert heights and all(abs(h - wanted) <= 1.0 for h in heights), heights


def test_source_reliance_weighs_every_token_alike_and_sees_no_difference_in_one_image(quick_demo):
    from umt.evaluation import corpus_excerpts, read_lmx, source_reliance, teacher_forced_loss
    from umt.inference import TranslationPipeline

    pipeline = TranslationPipeline.from_pretrained(quick_demo / "run" / "model")
    excerpts = corpus_excerpts(quick_demo / "corpus", "train", limit=5)
    sources = [pipeline.image_file_rows(e.image) for e in excerpts]
    gold = [read_lmx(e.lmx) for e in excerpts]
    targets = [pipeline.lmx_rows(tokens) for tokens in gold]
    assert len({len(t) for t in targets}) > 1  # so a batch is padded
    # batched and padded = each example alone weighed by its counted tokens (its rows and its EOS)
    alone = [teacher_forced_loss(pipeline, "omr", [s], [t]) for s, t in zip(sources, targets)]
    tokens = [len(t) + 1 for t in targets]
    weighted = sum(loss * n for loss, n in zip(alone, tokens)) / sum(tokens)
    batched = teacher_forced_loss(pipeline, "omr", sources, targets, batch_size=3)
    assert batched == pytest.approx(weighted, rel=1e-5)
    assert weighted != pytest.approx(float(np.mean(alone)), rel=1e-4)  # not the mean of examples
    figures = source_reliance(pipeline, sources, gold)
    assert set(figures) == {"omr_loss_own_image", "omr_loss_other_image"}
    assert figures["omr_loss_own_image"] == pytest.approx(weighted, rel=1e-5)
    assert figures["omr_loss_other_image"] != pytest.approx(weighted, rel=1e-6)
    # one image for every score: "another excerpt's image" is that same image
    same = source_reliance(pipeline, [sources[0]] * len(gold), gold)
    assert same["omr_loss_own_image"] == pytest.approx(same["omr_loss_other_image"], rel=1e-6)
    assert source_reliance(pipeline, sources[:1], gold[:1]) == {}
    assert source_reliance(pipeline, sources[:2], [gold[0], [*gold[1], "no-such-token"]]) == {}


@needs_fluidsynth
def test_curriculum_brought_in_every_task(quick_demo):
    import csv

    with open(quick_demo / "run" / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = {
        name.split("/")[1]
        for row in rows
        for name, value in row.items()
        if name.startswith("task/") and name.endswith("/loss") and value
    }
    assert logged == {"omr", "m2a", "i2a"}


@needs_fluidsynth
def test_rerun_finishes_without_redoing_work_and_other_settings_are_refused(quick_demo, capsys):
    checkpoint = quick_demo / "run" / "checkpoints" / "last.ckpt"
    tokenizer = quick_demo / "tokenizers" / "audio" / "tokenizer" / "model.safetensors"
    before = (checkpoint.stat().st_mtime_ns, tokenizer.stat().st_mtime_ns)
    (quick_demo / "report.html").unlink()
    assert umt_main(["demo", "--quick", "--out", str(quick_demo), "--no-progress"]) == 0
    assert (quick_demo / "report.html").is_file()
    assert (checkpoint.stat().st_mtime_ns, tokenizer.stat().st_mtime_ns) == before
    capsys.readouterr()
    assert umt_main(["demo", "--quick", "--translator-steps", "5", "--out", str(quick_demo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings (translator_steps differ)" in err[0]


@needs_fluidsynth
def test_umt_eval_runs_on_the_demo_model(quick_demo, tmp_path, capsys):
    model, corpus = quick_demo / "run" / "model", quick_demo / "corpus"
    common = [
        "--checkpoint",
        str(model),
        "--data",
        str(corpus),
        "--limit",
        "1",
        "--max-len",
        "16",
        "--no-progress",
    ]
    assert umt_main(["eval", "omr", *common, "--out", str(tmp_path / "omr")]) == 0
    figures = json.loads((tmp_path / "omr" / "metrics.json").read_text())["test_sets"]["corpus"]
    (row,) = [json.loads(line) for line in (tmp_path / "omr" / "per_item.jsonl").read_text().splitlines()]
    from umt.evaluate.items import read_items
    from umt.metrics.ser import symbol_error_rate

    (item,) = [i for i in read_items(corpus, "test", needs=("image", "lmx")) if i.key == row["key"]]
    ser = symbol_error_rate([item.lmx.read_text().split()], [row["predicted"].split()])
    assert figures["items"] == 1 and figures["ser"] == pytest.approx(ser.ser)  # the prediction's, recomputed
    assert "| corpus | 1 |" in capsys.readouterr().out
    # the demo model was not trained for AMT: one line, non-zero status, nothing written
    assert umt_main(["eval", "amt", *common, "--out", str(tmp_path / "amt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not amt" in err[0]
    assert not (tmp_path / "amt").exists()
    assert umt_main(["eval", "omr", "--checkpoint", str(model), "--data", str(tmp_path / "none")]) == 2
    assert "cannot read the manifest" in capsys.readouterr().err


@needs_fluidsynth
def test_every_paper_table_runs_on_the_built_in_corpus(quick_demo, tmp_path):
    """Each ``umt eval paper-table-*`` on the demo's corpus, with a tiny random model that has
    every task (the demo's model has no AMT to transcribe with): one 'corpus' row each."""
    from tests._inference_fixtures import make_model_folder
    from umt.cli.eval import TABLE_NAMES

    model = make_model_folder(tmp_path / "model")
    for table in TABLE_NAMES:
        out = tmp_path / table
        args = ["eval", table, "--checkpoint", str(model), "--data", str(quick_demo / "corpus")]
        assert umt_main([*args, "--out", str(out), "--limit", "1", "--max-len", "16", "--no-progress"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert list(metrics["test_sets"]) == ["corpus"] and metrics["test_sets"]["corpus"]["items"] == 1


def test_device_choice_reaches_every_trainer():
    from umt.demo import PRESETS, DemoContext, translator_config

    on_second_gpu = DemoContext(out=Path("/tmp/x"), settings=PRESETS["quick"], device="cuda:1")
    assert on_second_gpu.accelerator() == "gpu" and on_second_gpu.lightning_devices() == "[1]"
    cfg = translator_config(on_second_gpu)
    assert cfg.trainer.accelerator == "gpu" and list(cfg.trainer.devices) == [1]
    on_cpu = DemoContext(out=Path("/tmp/x"), settings=PRESETS["quick"], device="cpu")
    assert on_cpu.accelerator() == "cpu" and on_cpu.lightning_devices() == "1"


@needs_fluidsynth
def test_int8_decoding_stays_within_its_quality_bound_on_the_demo_model(quick_demo):
    """Issue #19's bound for shipping ``--dtype int8``: on the quick demo's model, >= 95 % of the
    greedy tokens of every task it has are those of fp32, and SER and cascade onset F1 move by at
    most 1 point (``python -m umt.bench quantized`` prints the same rows, with speed)."""
    from umt.bench.quantized import compare, within_bound
    from umt.demo import settings_for

    base, int8 = compare(
        quick_demo / "run" / "model", quick_demo / "corpus", ["int8"], 8, settings_for("quick")
    )
    assert set(base["per_task"]) == {"omr", "i2a", "m2a"}
    assert base["identical"] == 1.0 and base["ser_change"] == 0.0
    assert within_bound(int8), int8
