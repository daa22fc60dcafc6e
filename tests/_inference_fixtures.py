"""A tiny exported model folder and small inputs for the inference tests (made on the fly).

The model is a random-weight tiny Translator over a small vocabulary that fits tiny random image
(RQ-VAE) and audio (DAC) tokenizers; it is saved as a Lightning-style ``.ckpt`` and exported with
:func:`umt.pretrained.export_checkpoint`, so the tests load exactly what a trained model folder
holds. Its weight matrices are scaled up tenfold (so that outputs depend on the source), and the
output head's bias favours image codes and a few LMX note tokens (pitches, note types,
``measure``), so that sampled image outputs hold complete image columns and sampled LMX holds
notes (what the decoders and the cascade need to have something to decode).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.tasks import TASKS
from umt.vocab import VocabConfig, Vocabulary

TINY_VOCAB = dict(
    num_codebooks=4,
    image_codebooks=4,
    image_codebook_size=32,  # tiny_rqvae_config: n_embed 32, 4 codebooks
    audio_codebooks=4,
    audio_codebook_size=64,  # DACConfig.tiny: codebook_size 64, 4 codebooks
    max_image_height=8,
    midi_max_shift=2000,  # 20 s MIDI segments
)
ALL_TASKS = TASKS.names()  # every registered model task
IMAGE_CODE_BIAS = 4.0
NOTE_TOKEN_BIAS = 3.0
NOTE_TOKENS = ("measure", "C4", "E4", "G4", "quarter", "half")


def tiny_vocab() -> Vocabulary:
    return Vocabulary(VocabConfig(**TINY_VOCAB))


def make_tokenizer_dirs(root: Path, seed: int = 0) -> dict[str, Path]:
    """Random tiny image and audio tokenizer folders under ``root``."""
    from umt.models.dac import DAC, DACConfig
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.audio import AudioTokenizer
    from umt.tokenizers.image import new_tokenizer

    torch.manual_seed(seed)
    image = new_tokenizer(tiny_rqvae_config())
    image.save_pretrained(root / "image")
    audio = AudioTokenizer(DAC(DACConfig.tiny()))
    audio.save_pretrained(root / "audio")
    return {"image": root / "image", "audio": root / "audio"}


def make_model_folder(
    root: Path,
    tasks: list[str] | None = None,
    seed: int = 1,
    tokenizer_dirs: dict[str, Path] | None = None,
    **config: Any,
) -> Path:
    """An exported tiny model folder ``root/model`` (random weights) with its tokenizers inside;
    ``config`` changes the :class:`TranslatorConfig`.

    Seed 1 by default: a random model whose greedy OMR output depends on its input (with the
    layout-2 vocabulary, the one of seed 0 repeats one token whatever it is shown).
    """
    from umt.models.translator import Translator, TranslatorConfig
    from umt.pretrained import export_checkpoint
    from umt.tokenizers.audio import AudioTokenizer
    from umt.tokenizers.image import ImageTokenizer

    tokenizer_dirs = tokenizer_dirs or make_tokenizer_dirs(root / "tokenizers", seed)
    vocab = tiny_vocab()
    config = TranslatorConfig.tiny(
        d_model=32,
        n_heads=2,
        encoder_layers=1,
        decoder_layers=1,
        ff_dim=64,
        subdecoder_heads=2,
        max_source_len=2048,  # 20 s audio windows are 1723 rows
        max_target_len=128,
        **config,
    )
    torch.manual_seed(seed)
    model = Translator(config, vocab)
    with torch.no_grad():
        # Init-scale weights (std 0.02) make a random model ignore its input; larger ones make its
        # outputs depend on the source, so that order and batching mistakes would show.
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.mul_(10.0)
        for k in range(vocab.modality_codebooks("image")):
            codes = vocab.codebook_range("image", k)
            model.head.bias[codes.start : codes.stop] += IMAGE_CODE_BIAS
        for token in NOTE_TOKENS:
            model.head.bias[vocab.lmx_id(token)] += NOTE_TOKEN_BIAS
    ckpt = {
        "hyper_parameters": {
            "model": config.to_dict(),
            "vocab": dict(TINY_VOCAB),
            "tasks": list(ALL_TASKS if tasks is None else tasks),
        },
        "state_dict": {f"translator.{k}": v for k, v in model.state_dict().items()},
        "global_step": 0,
    }
    ckpt_path = root / "tiny.ckpt"
    torch.save(ckpt, ckpt_path)
    hashes = {
        "image": ImageTokenizer.from_pretrained(tokenizer_dirs["image"]).fingerprint,
        "audio": AudioTokenizer.from_pretrained(tokenizer_dirs["audio"]).fingerprint,
    }
    return export_checkpoint(
        ckpt_path, root / "model", tokenizer_hashes=hashes, tokenizer_dirs=tokenizer_dirs
    )


# ------------------------------------------------------------------------------------- inputs
def piano_musicxml(measures: int = 2, seed: int = 0) -> str:
    """A two-staff piano excerpt (random quarter notes) as MusicXML text."""
    from music21 import clef, layout, meter, note, stream
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    rng = np.random.default_rng(seed)
    score = stream.Score()
    for staff_clef, low in ((clef.TrebleClef(), 60), (clef.BassClef(), 43)):
        part = stream.PartStaff()
        for number in range(1, measures + 1):
            measure = stream.Measure(number=number)
            if number == 1:
                measure.append(staff_clef)
                measure.append(meter.TimeSignature("4/4"))
            for _ in range(4):
                measure.append(note.Note(int(low + rng.integers(0, 12)), quarterLength=1))
            part.append(measure)
        score.insert(0, part)
    score.insert(0, layout.StaffGroup(list(score.parts), symbol="brace"))
    return GeneralObjectExporter(score).parse().decode("utf-8")


def melody_musicxml(measures: int = 3, seed: int = 0) -> str:
    """A one-staff melody in 3/4 as MusicXML text."""
    from music21 import meter, note, stream
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    rng = np.random.default_rng(seed)
    part = stream.Part()
    for number in range(1, measures + 1):
        measure = stream.Measure(number=number)
        if number == 1:
            measure.append(meter.TimeSignature("3/4"))
        for _ in range(3):
            measure.append(note.Note(int(60 + rng.integers(0, 14)), quarterLength=1))
        part.append(measure)
    score = stream.Score()
    score.insert(0, part)
    return GeneralObjectExporter(score).parse().decode("utf-8")


def render(musicxml: str) -> np.ndarray:
    from umt.data.render import render_musicxml

    return np.asarray(render_musicxml(musicxml), dtype=np.uint8)


def stack_page(systems: list[np.ndarray], gap: int = 30, pad: int = 20) -> np.ndarray:
    width = max(s.shape[1] for s in systems) + 2 * pad
    height = sum(s.shape[0] for s in systems) + gap * (len(systems) - 1) + 2 * pad
    page = np.full((height, width), 255, dtype=np.uint8)
    top = pad
    for system in systems:
        page[top : top + system.shape[0], pad : pad + system.shape[1]] = system
        top += system.shape[0] + gap
    return page


def save_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def save_pdf(png_path: Path, pdf_path: Path) -> Path:
    """A one-page PDF showing ``png_path`` at 2 px per point (written by Pillow: 144 dpi)."""
    from PIL import Image

    with Image.open(png_path) as image:
        image.convert("L").save(pdf_path, "PDF", resolution=144.0)
    return pdf_path


def save_wav(path: Path, seconds: float, sample_rate: int = 44100, seed: int = 0) -> Path:
    """A few sine tones with a little noise."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    signal = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 330.0, 440.0))
    signal = signal + 0.01 * rng.standard_normal(t.shape)
    soundfile.write(str(path), signal.astype(np.float32), sample_rate)
    return path


def save_midi(path: Path, seconds: float = 3.0) -> Path:
    """A short piano MIDI file: one note every half second."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for index in range(int(seconds * 2)):
        start = index * 0.5
        piano.notes.append(pretty_midi.Note(velocity=80, pitch=60 + index % 12, start=start, end=start + 0.4))
    midi.instruments.append(piano)
    buffer = io.BytesIO()
    midi.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path
