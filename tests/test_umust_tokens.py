"""``umt import-umust-tokens``: U-MusT's baked token files as UMT shards.

The token files here are made the way their bake scripts make them (MALerLab/U-MusT
``scripts/bake_image_tokens.py``: a white-padded canvas cropped at 8 x 4 one-pixel offsets, codes
stacked ``[x_shift, y_shift, H, W, K]`` and saved int16 with ``torch.save``;
``scripts/bake_audio_tokens.py``: each shift ``s`` in -20..20 is the signal ``s`` samples later,
encoded per 60 s segment at 50 s hops and saved as a descript-audio-codec ``DACFile``, i.e.
``np.save`` of ``{"codes": uint16 [9, K, T], "metadata": {...}}``), restated here from their
scripts, with this project's tiny random tokenizers standing in for theirs. The import must give
the rows UMT computes from the same codes in its own variant order.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import _inference_fixtures as fx
from umt.cli import main
from umt.interop.umust_tokens import entry_key
from umt.tokenizers.audio import SHIFT_SAMPLES, shift_audio
from umt.tokenizers.folders import load_tokenizer
from umt.tokenizers.image import ImagePreprocessConfig, preprocess, shift_variants

THEIR_SHIFTS = list(range(-20, 21, 5))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return fx.make_model_folder(tmp_path_factory.mktemp("umust-tokens"))


def _their_crops(gray: np.ndarray) -> list[list[torch.Tensor]]:
    """Their bake script's 8 x 4 crops of a system image (stride 16): pad with white, left 4 + 8,
    top 2 + 8, right 3 + w_pad + 8, bottom 1 + h_pad + 8, then crop ``[j : H - 3 + j, i : W - 7 + i]``."""
    image = torch.from_numpy(gray).float().div(127.5).sub(1.0)[None]
    h_pad, w_pad = (16 - image.shape[-2] % 16) % 16, (16 - image.shape[-1] % 16) % 16
    padded = torch.nn.functional.pad(image, (12, 3 + w_pad + 8, 10, 1 + h_pad + 8), value=1.0)
    height, width = padded.shape[-2:]
    return [[padded[:, j : height - 3 + j, i : width - 7 + i] for j in range(4)] for i in range(8)]


def test_their_shift_crops_are_umt_variants_4dx_plus_dy():
    """The fact the image import rests on, pixel for pixel: their crop [i, j] is UMT's variant
    4 i + j of the preprocessed canvas (same size, same content, white elsewhere)."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 100, size=(37, 83)).astype(np.uint8)  # dark everywhere: nothing whitened
    config = ImagePreprocessConfig(white_offset=-1000.0)  # keep every pixel as it is
    canvas = preprocess(gray, config)
    theirs = _their_crops(gray)
    ours = shift_variants(canvas)
    for i in range(8):
        for j in range(4):
            assert torch.equal(theirs[i][j], ours[4 * i + j]), (i, j)


def _system_tokens(tokenizer, gray: np.ndarray, augmented: bool) -> torch.Tensor:
    canvas = preprocess(gray, tokenizer.preprocess_config, staff_height=18.0)
    variants = shift_variants(canvas)
    grids = [tokenizer.codes_of(v) for v in variants]  # each [H, W, K]
    stacked = torch.from_numpy(np.stack(grids).reshape(8, 4, *grids[0].shape)).to(torch.int16)
    if augmented:  # five "degraded" copies: here the codes rolled, to tell them apart
        stacked = torch.stack([stacked.roll(a, dims=-1) for a in range(6)])
    return stacked


def _save_dac(path: Path, codes: np.ndarray, length: int) -> None:
    """A DACFile as descript-audio-codec saves it (np.save of a dict)."""
    artifacts = {
        "codes": codes.astype(np.uint16),
        "metadata": {
            "input_db": np.array([-20.0], dtype=np.float32),
            "original_length": length,
            "sample_rate": 44100,
            "chunk_length": codes.shape[-1],
            "channels": 1,
            "padding": True,
            "dac_version": "1.0.0",
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.save(handle, artifacts)


def _their_segment_codes(tokenizer, signal: np.ndarray, start: int, length: int) -> np.ndarray:
    padded = np.pad(signal, (20, 20))
    variants = np.stack([padded[20 + start + s : 20 + start + s + length] for s in THEIR_SHIFTS])
    with torch.no_grad():
        return tokenizer.encode(torch.from_numpy(variants)[:, None].float()).numpy()  # [9, K, T]


def _read_shards(folder: Path) -> dict[tuple[str, int], list]:
    from umt.data.shards import ShardSet

    shards = ShardSet(folder)
    return {(key, variant): shards.get(key, variant).tolist() for key, variant in shards.items()}


def test_olimpic_style_image_tokens_import_as_umt_variants(model, tmp_path, capsys):
    tokenizer = load_tokenizer(model / "tokenizers" / "image")
    vocab_file = model / "config.json"
    root = tmp_path / "data"
    gray = fx.render(fx.piano_musicxml(1, 1))
    entries = []
    for index, augmented in enumerate((False, True)):
        folder = f"olimpic-1.0-synthetic/samples/49040{index}"
        pt = f"{folder}/image_tokens/unirqvae3_f16_c1024_k4/yolo_shifted_augmented/p1-s1_yolo_resized.pt"
        (root / pt).parent.mkdir(parents=True)
        torch.save(_system_tokens(tokenizer, gray, augmented), root / pt)
        entries.append({"lmx": f"{folder}/p1-s1.lmx", "pt": pt, "pt_len": 10})
    manifest = tmp_path / "olimpic.json"
    manifest.write_text(json.dumps({"train": entries[:1], "test": entries[1:], "valid": []}))
    out = tmp_path / "shards"
    argv = ["import-umust-tokens", str(manifest), "--root", str(root), "--tokenizer",
            str(model / "tokenizers" / "image"), "--vocab", str(vocab_file), "--out", str(out),
            "--strip-prefix", "olimpic-1.0-synthetic", "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    items = _read_shards(out)
    assert {key for key, _ in items} == {"samples/490400/p1-s1", "samples/490401/p1-s1"}
    assert len([k for k in items if k[0] == "samples/490400/p1-s1"]) == 32
    assert len([k for k in items if k[0] == "samples/490401/p1-s1"]) == 192  # 6 copies x 32 shifts

    # UMT's own tokenization of the same system, variant by variant
    from umt.vocab import vocabulary_from_dict

    vocab = vocabulary_from_dict(json.loads(vocab_file.read_text())["vocab"])
    canvas = preprocess(gray, tokenizer.preprocess_config, staff_height=18.0)
    for variant, shifted in enumerate(shift_variants(canvas)):
        assert items[("samples/490400/p1-s1", variant)] == tokenizer.tokenize(shifted, vocab).tolist()
        assert items[("samples/490401/p1-s1", variant)] == tokenizer.tokenize(shifted, vocab).tolist()
    assert items[("samples/490401/p1-s1", 32)] != items[("samples/490401/p1-s1", 0)]  # degraded copy 1

    before = sorted(p.name for p in out.iterdir())
    assert main(argv) == 0  # a rerun finds everything done and writes nothing
    assert "2 entries, 2 already imported, 0 items written" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_maestro_style_audio_tokens_import_window_by_window(model, tmp_path, capsys):
    """Two overlapping segments (1.5 s long, 1.25 s apart, as their 60 s / 50 s), 0.5 s windows:
    each window's frames come from the segment that holds it, with UMT's shift order (UMT's shift
    ``u`` is their ``-u``); checked against UMT's own shifts and codec over the whole recording."""
    tokenizer = load_tokenizer(model / "tokenizers" / "audio")
    rate, hop = tokenizer.sample_rate, tokenizer.hop_length
    stem = "MIDI-Unprocessed_Recital5-7_MID--AUDIO_07_R1_2018_wav--2"
    signal = np.random.default_rng(1).uniform(-0.3, 0.3, size=int(2.6 * rate)).astype(np.float32)
    root = tmp_path / "maestro"
    dacs = []
    for start_seconds in (0.0, 1.25):
        start = round(start_seconds * rate)
        length = min(round(1.5 * rate), len(signal) - start)
        name = f"audio_tokens/2018/{stem}/mono_augmented/unidac4_4/{stem}_{start_seconds:07.2f}.dac"
        _save_dac(root / name, _their_segment_codes(tokenizer, signal, start, length), length)
        dacs.append(name)
    entry = {"dac": dacs, "npy": f"2018/{stem}_note_events.npy"}
    manifest = tmp_path / "maestro.json"
    manifest.write_text(json.dumps({"train": [entry], "validation": [], "test": []}))
    out = tmp_path / "shards"
    argv = ["import-umust-tokens", str(manifest), "--root", str(root), "--tokenizer",
            str(model / "tokenizers" / "audio"), "--vocab", str(model / "config.json"), "--out", str(out),
            "--key", "stem", "--window-seconds", "0.5", "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    items = _read_shards(out)
    windows = sorted({key for key, _ in items})
    assert windows == [f"{stem}@{w}" for w in range(6)]  # 2.6 s: five whole windows and a 0.1 s one
    from umt.vocab import vocabulary_from_dict

    vocab = vocabulary_from_dict(json.loads((model / "config.json").read_text())["vocab"])
    whole = torch.from_numpy(signal)[None]
    for variant, shift in enumerate(SHIFT_SAMPLES):
        shifted = shift_audio(whole, shift)
        for window in (0, 3):  # window 3 (1.5..2.0 s) lies in the second segment only
            segment_start = 0 if window == 0 else round(1.25 * rate)
            length = min(round(1.5 * rate), len(signal) - segment_start)
            with torch.no_grad():
                codes = tokenizer.encode(shifted[:, segment_start : segment_start + length])[0].numpy()
            first = round((round(window * 0.5 * rate) - segment_start) / hop)
            frames = -(-round(0.5 * rate) // hop)
            expected = vocab.codes_to_ids("audio", codes[:, first : first + frames].T).tolist()
            assert items[(f"{stem}@{window}", variant)] == expected, (variant, window)


def test_keys_meet_what_data_prepare_writes():
    olimpic = {"lmx": "olimpic-1.0-synthetic/samples/4904021/p1-s1.lmx", "pt": "x/image_tokens/a/b/p1-s1.pt"}
    assert entry_key(olimpic, "pt", strip_prefix="olimpic-1.0-synthetic/") == "samples/4904021/p1-s1"
    maestro = {
        "dac": ["audio_tokens/2018/S/mono_augmented/unidac4_4/S_0000.dac"],
        "npy": "2018/S_note_events.npy",
    }
    assert entry_key(maestro, "dac") == "2018/S" and entry_key(maestro, "dac", stem_only=True) == "S"
    bare = {"dac": ["audio_tokens/2018/S/mono_augmented/unidac4_4/S_1061.74.dac"]}
    assert entry_key(bare, "dac", stem_only=True) == "S"
    image_only = {"pt": "olimpic/samples/1/image_tokens/m/yolo_shifted/p2-s3_yolo_resized.pt"}
    assert entry_key(image_only, "pt") == "olimpic/samples/1/p2-s3"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bad_token_files_are_one_line_each_and_the_others_go_on(model, tmp_path, capsys):
    tokenizer = load_tokenizer(model / "tokenizers" / "audio")
    marker = tmp_path / "payload-ran"
    root = tmp_path / "data"
    good = _their_segment_codes(tokenizer, np.zeros(4410, np.float32), 0, 4410)
    cases = {
        "good": lambda p: _save_dac(p, good, 4410),
        "payload": lambda p: p.write_bytes(
            b"\x93NUMPY\x01\x00" + _npy_header() + pickle.dumps(np.array(_Payload(marker), dtype=object))
        ),
        "truncated": lambda p: p.write_bytes(_dac_bytes(good)[:200]),
        "letter": lambda p: p.write_text("Dear reader\n"),
        "wrong_codebooks": lambda p: _save_dac(p, good[:, :2], 4410),
        "out_of_range": lambda p: _save_dac(p, good + 5000, 4410),
        "wrong_variants": lambda p: _save_dac(p, good[:4], 4410),
    }
    entries = []
    for name, make in cases.items():
        path = root / "audio_tokens" / name / "mono" / f"{name}_0000.dac"
        path.parent.mkdir(parents=True)
        make(path)
        entries.append({"dac": [str(path.relative_to(root))], "lmx": f"lmx/{name}.lmx"})
    entries.append({"dac": ["../outside_0000.dac"], "lmx": "lmx/outside.lmx"})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"train": entries[:-1]}))
    out = tmp_path / "shards"
    argv = ["import-umust-tokens", str(manifest), "--root", str(root), "--tokenizer",
            str(model / "tokenizers" / "audio"), "--vocab", str(model / "config.json"), "--out", str(out),
            "--window-seconds", "0.05", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("umt: error:")]
    assert len(lines) == len(cases) - 1, err
    for name in cases:
        if name != "good":
            assert sum(f"/{name}_0000.dac: " in line for line in lines) == 1, (name, err)
    assert not marker.exists()  # the payload never ran
    assert "refused to load pathlib" in err or "refused" in next(line for line in lines if "payload" in line)
    assert {key.split("@")[0] for key, _ in _read_shards(out)} == {"lmx/good"}

    manifest.write_text(json.dumps({"train": entries[-1:]}))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umt: error: ") and "leaves the --root folder" in err and len(err.splitlines()) == 1
    manifest.write_text("{not json")
    assert main(argv) == 2
    assert "not a readable U-MusT manifest" in capsys.readouterr().err


def _dac_bytes(codes: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, {"codes": codes.astype(np.uint16), "metadata": {}})
    return buffer.getvalue()


def _npy_header() -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header = header + " " * (117 - len(header)) + "\n"  # 10-byte preamble + 118 = 128
    return len(header).to_bytes(2, "little") + header.encode()


def test_a_model_fine_tunes_on_imported_tokens_paired_with_umt_baked_lmx(model, tmp_path, capsys):
    """The point of the import: their image tokens (imported) and UMT's LMX shards of the same keys
    (baked by ``umt bake lmx``) make an OMR data set that ``umt train`` reads."""
    from umt.pretrained import read_config
    from umt.training.config import compose
    from umt.training.train import train

    tokenizer = load_tokenizer(model / "tokenizers" / "image")
    root, data = tmp_path / "their", tmp_path / "shards" / "olimpic"
    gray = fx.render(fx.piano_musicxml(1, 1))
    entries, lmx_manifest = [], []
    for index in range(3):
        folder = f"samples/{index}"
        pt = f"{folder}/image_tokens/unirqvae3_f16_c1024_k4/yolo_shifted/p1-s1_yolo_resized.pt"
        (root / pt).parent.mkdir(parents=True)
        torch.save(_system_tokens(tokenizer, gray, augmented=False), root / pt)
        (root / folder / "p1-s1.lmx").write_text("measure C4 quarter E4 quarter G4 half")
        entries.append({"lmx": f"{folder}/p1-s1.lmx", "pt": pt})
        lmx_manifest.append(json.dumps({"key": f"{folder}/p1-s1", "path": str(root / folder / "p1-s1.lmx")}))
    (tmp_path / "olimpic.json").write_text(json.dumps({"train": entries}))
    (tmp_path / "lmx.jsonl").write_text("\n".join(lmx_manifest) + "\n")
    vocab_file = str(model / "config.json")
    assert main(["import-umust-tokens", str(tmp_path / "olimpic.json"), "--root", str(root), "--tokenizer",
                 str(model / "tokenizers" / "image"), "--vocab", vocab_file, "--out", str(data / "image"),
                 "--variants", "4", "--no-progress"]) == 0  # fmt: skip
    assert main(["bake", "lmx", "--manifest", str(tmp_path / "lmx.jsonl"), "--vocab", vocab_file,
                 "--out", str(data / "lmx"), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    vocab = read_config(model)["vocab"]
    overrides = [
        "experiment=tiny",
        f"data.root={tmp_path / 'shards'}",
        f"run_dir={tmp_path / 'run'}",
        f"init_from={model}",
        "trainer.max_steps=2",
        "logger.kind=none",
        "mixture.entries=[{task:omr,weight:1.0,start:0,datasets:[olimpic]}]",
        *(f"vocab.{key}={value}" for key, value in vocab.items() if key != "modalities"),
    ]
    trainer = train(compose(overrides))
    assert trainer.global_step == 2
    (dataset,) = trainer.datamodule.stream.datasets
    assert len(dataset.items) == 12  # 3 systems x 4 variants, each paired with its LMX
    assert trainer.datamodule.tokenizer_hashes == {"image": tokenizer.fingerprint}
