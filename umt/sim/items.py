"""SIM's examples: aligned (score image, MIDI, bars) triples read from a manifest.

A manifest is JSON Lines; a record gives its image as ``png`` or ``image`` and its music as
``mid`` / ``midi`` (a MIDI file), ``musicxml`` or ``lmx`` (engraved to MusicXML, then played at
``tempo_qpm``, 100 by default). Bar borders come from the MusicXML (the file, or the LMX's), timed
at ``tempo_qpm`` or the MIDI file's first tempo. The corpus of ``umt corpus build`` has all of
these; GrandStaff's and BPSD's prepared manifests pair ``image`` with ``lmx``.

Only the first window (20 s) of the music is kept: the MIDI tokens of one window are what the
model reads. A record that cannot be read is reported (one line, naming it) and left out.
Tokenized items are cached in one ``.npz`` (no pickles) keyed by the manifest's bytes, the image
tokenizer's fingerprint and the label field, so reruns start at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import UserError
from umt.modalities.windows import WINDOW_SECONDS
from umt.tokenizers.midi import Note, encode_windows
from umt.utils.io import atomic_write
from umt.vocab import PAD_ID, VocabConfig, Vocabulary

CACHE_FORMAT = "umt-sim-items/1"
IMAGE_FIELDS = ("png", "image")
MIDI_FIELDS = ("mid", "midi")


@dataclass
class SimItem:
    key: str
    piece: str
    split: str
    label: str | None
    grid: np.ndarray
    """Vocabulary ids of the image's code grid ``int64 [H, W, K]`` (systems side by side, PAD below
    a shorter one)."""
    notes: np.ndarray
    """``float64 [N, 5]``: onset and offset in seconds, pitch, program, is_drum."""
    bars: np.ndarray
    """Bar borders in seconds ``float64 [M + 1]`` (empty: not known)."""

    def note_list(self) -> list[Note]:
        return [Note(int(p), int(g), bool(d), float(a), float(b)) for a, b, p, g, d in self.notes]

    def midi_ids(self, vocab: Vocabulary, notes: list[Note] | None = None) -> list[int]:
        """The MIDI event ids of the first window of ``notes`` (default: the item's)."""
        return encode_windows(self.note_list() if notes is None else notes, vocab, WINDOW_SECONDS)[0]


def sim_vocabulary(tokenizer: Any) -> Vocabulary:
    """Image codes of ``tokenizer`` and MIDI events: the vocabulary a SIM model reads."""
    from umt.tokenizers.folders import codebook_layout

    codebooks, size = codebook_layout(tokenizer)
    config = VocabConfig(
        num_codebooks=codebooks,
        image_codebooks=codebooks,
        image_codebook_size=size,
        audio_codebooks=codebooks,  # no audio block; the field must still fit num_codebooks
        modalities=("image", "midi"),
    )
    return Vocabulary(config)


def read_records(manifest: Path) -> list[dict]:
    """The records of a JSON Lines manifest (a malformed line is one :class:`UserError`)."""
    if not manifest.is_file():
        raise UserError("no such manifest", manifest)
    records = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"line {number}: not JSON", manifest) from None
        if not isinstance(record, dict):
            raise UserError(f"line {number}: not a record", manifest)
        records.append(record)
    if not records:
        raise UserError("holds no records", manifest)
    return records


def image_grid(tokenizer: Any, path: Path, vocab: Vocabulary) -> np.ndarray:
    """An image file's code grid as vocabulary ids ``int64 [H, W, K]`` (stacked systems side by side)."""
    loaded = tokenizer.load(path)
    grids = [tokenizer.codes_of(system) for system in (loaded if isinstance(loaded, list) else [loaded])]
    height = max(grid.shape[0] for grid in grids)
    grids = [np.pad(g, ((0, height - g.shape[0]), (0, 0), (0, 0)), constant_values=-1) for g in grids]
    codes = np.concatenate(grids, axis=1)
    starts = np.array([vocab.codebook_range("image", k).start for k in range(codes.shape[2])])
    return np.where(codes >= 0, codes + starts, PAD_ID).astype(np.int64)


def music_of(record: dict, base: Path) -> tuple[list[Note], np.ndarray]:
    """A record's notes and bar borders in seconds (see the module docstring)."""
    from umt.inference.inputs import musicxml_to_notes
    from umt.sim.bars import measure_borders
    from umt.tokenizers.midi import notes_from_midi

    musicxml, name = _musicxml_of(record, base)
    midi_path = next((base / record[f] for f in MIDI_FIELDS if record.get(f)), None)
    qpm = record.get("tempo_qpm")
    if midi_path is not None:
        notes = notes_from_midi(midi_path)
        qpm = qpm or _first_tempo(midi_path)
    elif musicxml is not None:
        qpm = qpm or 100.0
        notes = musicxml_to_notes(musicxml, name, qpm=qpm)
    else:
        raise UserError("has no music (mid, midi, musicxml or lmx)", record.get("key"))
    if not notes:
        raise UserError("holds no notes", midi_path or name)
    bars = measure_borders(musicxml, float(qpm), name) if musicxml is not None else np.zeros(0)
    return notes, bars


def _musicxml_of(record: dict, base: Path) -> tuple[str | None, str]:
    if record.get("musicxml"):
        from umt.utils.safe_xml import read_xml_file_bytes

        path = base / record["musicxml"]
        return read_xml_file_bytes(path).decode("utf-8"), str(path)
    if record.get("lmx"):
        from umt.tokenizers.lmx import delinearize

        path = base / record["lmx"]
        return delinearize(path.read_text(encoding="utf-8")).musicxml, str(path)
    return None, ""


def _first_tempo(path: Path) -> float:
    import pretty_midi

    _, tempi = pretty_midi.PrettyMIDI(str(path)).get_tempo_changes()
    return float(tempi[0]) if len(tempi) else 120.0


def first_window(notes: list[Note], bars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Notes starting in the first window (as ``[N, 5]``) and the bars that fit in it."""
    kept = [n for n in notes if n.onset < WINDOW_SECONDS]
    array = np.array(
        [[n.onset, min(n.offset, WINDOW_SECONDS), n.pitch, n.program, n.is_drum] for n in kept],
        dtype=np.float64,
    ).reshape(-1, 5)
    bars = bars[bars <= WINDOW_SECONDS + 1e-9]
    return array, (bars if len(bars) >= 2 else np.zeros(0))


def read_item(
    record: dict, base: Path, tokenizer: Any, vocab: Vocabulary, label_field: str | None
) -> SimItem:
    from umt.data.patches import dotted_field

    image_name = next((record[f] for f in IMAGE_FIELDS if record.get(f)), None)
    if image_name is None:
        raise UserError("has no image (png or image)", record.get("key"))
    notes, bars = music_of(record, base)
    notes_array, bars = first_window(notes, bars)
    if not len(notes_array):
        raise UserError("holds no notes in its first window", record.get("key"))
    return SimItem(
        key=str(record.get("key") or image_name),
        piece=str(record.get("piece") or record.get("key") or image_name),
        split=str(record.get("split") or "train"),
        label=dotted_field(record, label_field),
        grid=image_grid(tokenizer, base / image_name, vocab),
        notes=notes_array,
        bars=bars,
    )


def load_items(
    manifest: str | Path,
    tokenizer: Any,
    vocab: Vocabulary,
    label_field: str | None = None,
    cache: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[SimItem], dict[str, str]]:
    """Every readable record of ``manifest`` as a :class:`SimItem`, and the failures (key -> reason)."""
    manifest = Path(manifest)
    records = read_records(manifest)
    signature = hashlib.sha256(
        manifest.read_bytes() + tokenizer.fingerprint.encode() + str(label_field).encode()
    ).hexdigest()
    if cache is not None and (cached := _read_cache(cache, signature)) is not None:
        return cached
    items: list[SimItem] = []
    failures: dict[str, str] = {}
    for index, record in enumerate(records):
        try:
            items.append(read_item(record, manifest.parent, tokenizer, vocab, label_field))
        except (UserError, OSError, ValueError) as error:
            key = str(record.get("key") or f"line {index + 1}")
            failures[key] = getattr(error, "problem", None) or str(error)
        if progress is not None:
            progress(index + 1, len(records))
    if cache is not None:
        _write_cache(cache, signature, items, failures)
    return items, failures


def load_reported(
    manifest: str | Path,
    tokenizer: Any,
    vocab: Vocabulary,
    label_field: str | None = None,
    cache: Path | None = None,
) -> tuple[list[SimItem], dict[str, str], Path]:
    """:func:`load_items` of a manifest or of a folder's ``manifest.jsonl``, with one line on stderr
    for each record that cannot be read; also returns the manifest's path."""
    manifest = Path(manifest)
    manifest = manifest / "manifest.jsonl" if manifest.is_dir() else manifest
    items, failures = load_items(manifest, tokenizer, vocab, label_field, cache)
    for key, reason in failures.items():
        print(f"umt: {manifest}: {key}: {reason}", file=sys.stderr)
    return items, failures, manifest


def _write_cache(path: Path, signature: str, items: list[SimItem], failures: dict[str, str]) -> None:
    meta = {
        "format": CACHE_FORMAT,
        "signature": signature,
        "failures": failures,
        "items": [[i.key, i.piece, i.split, i.label] for i in items],
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for index, item in enumerate(items):
        arrays[f"grid{index}"], arrays[f"notes{index}"], arrays[f"bars{index}"] = (
            item.grid,
            item.notes,
            item.bars,
        )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _read_cache(path: Path, signature: str) -> tuple[list[SimItem], dict[str, str]] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != CACHE_FORMAT or meta.get("signature") != signature:
                return None
            items = [
                SimItem(key, piece, split, label, data[f"grid{i}"], data[f"notes{i}"], data[f"bars{i}"])
                for i, (key, piece, split, label) in enumerate(meta["items"])
            ]
            return items, meta["failures"]
    except (OSError, ValueError, KeyError):  # no cache, or an unreadable one: read the manifest again
        return None
