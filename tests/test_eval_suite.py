"""``umt eval``: every task end to end on a tiny random model and a small prepared test set (made
here: Verovio systems, their LMX and MIDI, sine-tone audio), resuming, refusals, paper tables and
the side-by-side comparison. The figures of a random model are meaningless; what is checked is
that each task runs, scores every item and writes what it promises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests import _inference_fixtures as fx
from umt.cli import main

pytest.importorskip("verovio")
pytest.importorskip("librosa")

KEYS = ("samples/100/p1-s1", "samples/100/p1-s2", "samples/200/p1-s1")


def _write_item(root: Path, key: str, seed: int) -> dict:
    import pretty_midi
    from PIL import Image

    from umt.tokenizers.lmx import linearize_string

    musicxml = fx.piano_musicxml(1, seed)
    paths = {
        m: Path(m) / "test" / f"{key}.{ext}"
        for m, ext in (("image", "png"), ("lmx", "lmx"), ("audio", "flac"), ("midi", "mid"))
    }
    for path in paths.values():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(fx.render(musicxml)).save(root / paths["image"])
    (root / paths["lmx"]).write_text(" ".join(linearize_string(musicxml)) + "\n")
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    rate, t = 44100, np.arange(int(2.0 * 44100)) / 44100
    wave = np.zeros_like(t)
    for k in range(4):
        pitch, start = 60 + (seed + 2 * k) % 12, 0.1 + 0.45 * k
        piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=start, end=start + 0.4))
        inside = (t >= start) & (t < start + 0.4)
        wave[inside] += 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t[inside])
    midi.instruments.append(piano)
    midi.write(str(root / paths["midi"]))
    soundfile.write(str(root / paths["audio"]), wave.astype(np.float32), rate)
    return {
        "key": key,
        "split": "test",
        "piece": key.rsplit("/", 1)[0],
        **{m: p.as_posix() for m, p in paths.items()},
    }


@pytest.fixture(scope="module")
def test_set(tmp_path_factory) -> Path:
    """A prepared OLiMPiC-scanned-like folder: three test items with all four modalities."""
    root = tmp_path_factory.mktemp("eval") / "olimpic-scanned"
    records = [_write_item(root, key, seed) for seed, key in enumerate(KEYS)]
    records.append({**records[0], "key": "train-only", "split": "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    stamp = {"format": "umt-prepare/2", "dataset": "olimpic", "root": "/downloads/olimpic-1.0-scanned"}
    (root / "prepare.json").write_text(json.dumps(stamp))
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return fx.make_model_folder(tmp_path_factory.mktemp("model"))


def _eval(task: str, model: Path, data: Path, out: Path, *extra: str) -> int:
    args = ["eval", task, "--checkpoint", str(model), "--data", str(data), "--out", str(out)]
    return main([*args, "--batch-size", "2", "--max-len", "48", "--no-progress", *extra])


@pytest.mark.parametrize(
    "task, command",
    [
        ("omr", "omr"),
        ("amt", "paper-table-8"),
        ("i2a", "paper-table-i2a"),
        ("m2a", "paper-table-m2a"),
        ("a2i", "paper-table-a2i"),
        ("l2i", "l2i"),
    ],
)
def test_every_task_scores_every_item(task, command, model, test_set, tmp_path, capsys):
    """Each task, through its paper table's command where it has one (the same scoring)."""
    out = tmp_path / task
    assert _eval(command, model, test_set, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    assert sorted(row["key"] for row in rows) == sorted(KEYS)  # the train item is not scored
    figures = metrics["test_sets"]["olimpic/olimpic-1.0-scanned"]
    assert figures["items"] == 3 and metrics["failed"] == []
    from umt.evaluate.report import COLUMNS

    first = COLUMNS[task][0][0]
    assert first in figures  # the task's headline figure was computed (a random model's value)
    if task in ("i2a", "m2a"):  # the generated audio against the test set's recordings
        assert figures["fad_log_mel"] is not None and figures["fad_log_mel"] > 0
    table = (out / "table.md").read_text()
    assert table.startswith(f"# umt eval {task}") and "olimpic/olimpic-1.0-scanned" in table
    assert capsys.readouterr().out == table


def test_a_killed_run_resumes_with_the_items_left(model, test_set, tmp_path, monkeypatch):
    from umt.evaluate import tasks

    calls: list[list[str]] = []
    real = tasks.SCORERS["omr"]

    def counting(ctx, items):
        calls.append([item.key for item in items])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while scoring the second chunk
        return real(ctx, items)

    monkeypatch.setitem(tasks.SCORERS, "omr", counting)
    out = tmp_path / "omr"
    assert _eval("omr", model, test_set, out) == 130
    assert len((out / "per_item.jsonl").read_text().splitlines()) == 2
    with (out / "per_item.jsonl").open("a") as handle:
        handle.write('{"key": "half a line')  # what a kill in mid-write leaves
    calls.clear()
    assert _eval("omr", model, test_set, out) == 0
    assert calls == [[KEYS[2]]]  # only the item not scored before
    assert len((out / "per_item.jsonl").read_text().splitlines()) == 3
    # other settings into the same folder: refused
    assert _eval("omr", model, test_set, out, "--seed", "3") == 2


def test_paper_table_and_compare(model, test_set, tmp_path, capsys):
    assert _eval("paper-table-7", model, test_set, tmp_path / "a") == 0
    table = (tmp_path / "a" / "table.md").read_text()
    assert "13.67 (paper)" in table  # OLiMPiC scanned, the paper's full model
    assert "| OMR only | 15.90 | 24.58 | 45.39 |" in table
    assert _eval("omr", model, test_set, tmp_path / "b", "--limit", "2") == 0
    capsys.readouterr()
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| test set | figure | a | b |"
    assert "| olimpic/olimpic-1.0-scanned | items | 3 | 2 |" in lines
    # the runs as the rows of the paper's ablation table, the paper's rows below
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert main(["eval", "compare", *runs, "--table", "paper-table-7"]) == 0
    ablation = capsys.readouterr().out.splitlines()
    ser_a = json.loads((tmp_path / "a" / "metrics.json").read_text())["test_sets"]
    assert ablation[2] == "| run | OLiMPiC synthetic | OLiMPiC scanned | BPSD scanned |"
    assert ablation[4] == f"| a | — | {ser_a['olimpic/olimpic-1.0-scanned']['ser']:.2f} | — |"
    assert ablation[5].startswith("| b | — | ")
    assert "| OMR only (paper) | 15.90 | 24.58 | 45.39 |" in ablation
    assert main(["eval", "compare", str(tmp_path / "a"), "--table", "paper-table-8"]) == 2
    assert "paper-table-8 is a table of amt runs; the folders hold omr runs" in capsys.readouterr().err


def test_tables_without_published_figures_say_so():
    """The image-to-audio, audio-to-image and MIDI-to-audio sets: our figures per test set, no
    invented paper column, and a note saying where the paper's figures are."""
    from umt.evaluate.report import PAPER_TABLES, markdown_table

    metrics = {
        "task": "i2a",
        "test_sets": {"bpsd": {"items": 2, "onset_f1_50ms": 0.5, "onset_f1_100ms": 0.625}},
        "failed": [],
    }
    table = markdown_table(metrics, "paper-table-i2a")
    assert "| bpsd | 2 | 50.00 | 62.50 | — | — | — |" in table
    assert "paper, full model" not in table and "(paper)" not in table
    assert "Tables IV-VI" in table
    for name, paper in PAPER_TABLES.items():
        for text, index in paper.match:
            assert index < len(paper.columns) and paper.column_of(f"{text.upper()}/x-1.0") == index, name
        assert not paper.rows or paper.full in paper.rows
        assert all(len(values) == len(paper.columns) for values in paper.rows.values())


def test_bad_items_and_bad_commands(model, test_set, tmp_path, capsys):
    root = tmp_path / "broken"
    records = [json.loads(line) for line in test_set.read_text().splitlines()]
    for record in records:
        for modality in ("image", "lmx", "audio", "midi"):
            target = root / record[modality]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((test_set.parent / record[modality]).read_bytes())
    (root / records[1]["image"]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "manifest.jsonl").write_text(test_set.read_text())
    assert _eval("omr", model, root / "manifest.jsonl", tmp_path / "out") == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_item.jsonl").read_text().splitlines()]
    assert [("error" in row) for row in rows] == [False, True, False]
    assert "not a readable image" in rows[1]["error"] or "cannot" in rows[1]["error"]
    capsys.readouterr()
    assert _eval("omr", model, test_set, tmp_path / "val", "--split", "val") == 2
    assert "no 'val' items with image and lmx (splits here: test, train)" in capsys.readouterr().err
    amt_only = fx.make_model_folder(tmp_path / "amt", tasks=["amt"])
    assert _eval("omr", amt_only, test_set, tmp_path / "wrong") == 2
    assert "trained for amt, not omr" in capsys.readouterr().err
    a2i_only = fx.make_model_folder(tmp_path / "a2i", tasks=["a2i"])
    assert _eval("a2i", a2i_only, test_set, tmp_path / "noreader") == 2
    assert "the model does not do omr; give --omr MODEL" in capsys.readouterr().err


def test_cli_lists_its_tasks_and_tables():
    from umt.cli.eval import TABLE_NAMES, TASK_NAMES
    from umt.evaluate.report import PAPER_TABLES
    from umt.evaluate.tasks import SCORERS

    assert set(TASK_NAMES) == set(SCORERS) and set(TABLE_NAMES) == set(PAPER_TABLES)


def test_eval_scripts_are_the_command(model, test_set, tmp_path):
    """``python eval/omr.py ...`` is ``umt eval omr ...``."""
    import subprocess
    import sys

    from tests._subprocess import checkout_env

    root = Path(__file__).resolve().parents[1]
    args = ["--checkpoint", str(model), "--data", str(test_set), "--out", str(tmp_path / "o"), "--limit", "1"]
    done = subprocess.run(
        [sys.executable, str(root / "eval" / "omr.py"), *args, "--max-len", "16", "--no-progress"],
        capture_output=True,
        text=True,
        env=checkout_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["task"] == "omr"


def test_attention_weights_are_what_the_layers_computed(model, test_set, tmp_path, capsys):
    """The recorded weights reproduce each cross-attention layer's output; the plot and the
    alignment cover every generated audio frame, and every frame points at a column of the image."""
    import torch

    from umt.data.pipeline import collate
    from umt.evaluate.attention import layer_weights
    from umt.inference import GenerationConfig, TranslationPipeline

    pipeline = TranslationPipeline.from_pretrained(model)
    image = test_set.parent / json.loads(test_set.read_text().splitlines()[0])["image"]
    source = pipeline.image_file_rows(image)
    rows = pipeline.generate("i2a", [source], GenerationConfig(max_len=24, temperature=1.0))[0].rows
    batch = collate([(source, rows, "image", "audio", 0)], pipeline.vocab)
    outputs = []
    handles = [
        layer.cross_attn.register_forward_hook(lambda m, i, o: outputs.append((i[1][1], o)))
        for layer in pipeline.model.decoder
    ]
    weights = layer_weights(pipeline.model, batch)
    for handle in handles:
        handle.remove()
    outputs = outputs[-len(weights) :]
    for layer, w, (values, out) in zip(pipeline.model.decoder, weights, outputs):
        assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5)
        attended = (w @ values.float()).transpose(1, 2).reshape(out.shape)
        assert torch.allclose(layer.cross_attn.out(attended), out, atol=1e-4)

    out_png = tmp_path / "follow.png"
    args = ["eval", "attention", str(image), str(out_png), "--checkpoint", str(model), "--max-len", "24"]
    assert main(args) == 0
    alignment = json.loads(out_png.with_suffix(".json").read_text())
    from PIL import Image

    with Image.open(out_png) as picture:
        width = picture.width
        assert picture.height > len(alignment["frames"])
    assert 0 < len(alignment["frames"]) <= 23  # max-len 24 counts the SOS row
    assert all(0 <= frame["x"] <= width and 0 < frame["share"] <= 1 for frame in alignment["frames"])
    assert main(["eval", "attention", str(image), str(tmp_path / "x.jpg"), "--checkpoint", str(model)]) == 2


def test_attention_of_a_model_reading_whole_columns_maps_each_position_to_its_column(test_set, tmp_path):
    """With ``source_columns`` the memory holds one position per code column: the alignment
    spreads each frame over the image's columns as the rows' version does (sums to 1 per frame)."""
    from umt.evaluate.attention import ImageColumns, attention_alignment
    from umt.inference import GenerationConfig, TranslationPipeline

    folder = fx.make_model_folder(tmp_path, source_columns=True)
    pipeline = TranslationPipeline.from_pretrained(folder)
    image = test_set.parent / json.loads(test_set.read_text().splitlines()[0])["image"]
    source = pipeline.image_file_rows(image)
    rows = pipeline.generate("i2a", [source], GenerationConfig(max_len=12, temperature=1.0))[0].rows
    alignment, per_system, systems = attention_alignment(pipeline, image, source, rows)
    by_row = ImageColumns.of(source[:, 0], pipeline.vocab)
    whole = ImageColumns.of(source[:, 0], pipeline.vocab, whole_columns=True)
    columns = [int(by_row.column[by_row.system == s].max()) + 1 for s in range(len(systems))]
    assert [attention.shape[1] for attention in per_system] == columns
    assert sorted(set(zip(whole.system.tolist(), whole.column.tolist()))) == sorted(
        set(zip(by_row.system.tolist(), by_row.column.tolist()))
    )  # one entry per column, the special rows' (-1, -1) once each
    assert (whole.column >= 0).sum() == sum(columns)
    total = sum(attention.sum(axis=1) for attention in per_system)
    assert np.all(total > 0.0) and np.all(total <= 1.0 + 1e-5)
    assert len(alignment["frames"]) == len(rows)


def test_int8_evaluation_records_its_dtype_and_is_not_mixed_with_fp32(model, test_set, tmp_path, capsys):
    out = tmp_path / "omr-int8"
    assert _eval("omr", model, test_set, out, "--dtype", "int8") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["dtype"] == "int8"
    assert metrics["test_sets"]["olimpic/olimpic-1.0-scanned"]["items"] == 3
    capsys.readouterr()
    assert _eval("omr", model, test_set, out) == 2  # fp32 scores into an int8 folder: refused
    assert "other settings" in capsys.readouterr().err
    # an fp32 run's settings are those of runs made before --dtype existed
    assert "dtype" not in json.loads(_fp32_settings(model, test_set, tmp_path / "omr-fp32"))


def _fp32_settings(model: Path, data: Path, out: Path) -> str:
    assert _eval("omr", model, data, out) == 0
    return json.dumps(json.loads((out / "metrics.json").read_text())["settings"])
