"""Build the four-modality corpus: per excerpt MusicXML, LMX, PNG, MIDI and WAV, plus a manifest.

Layout of ``out``::

    manifest.jsonl          one JSON object per excerpt (sorted by key), written at the end
    manifest.partial.jsonl  the same records appended as pieces finish (a killed run loses nothing)
    failures.jsonl          one object per failed piece or excerpt: piece, key, stage, reason
    <split>/<piece>/<key>.{musicxml,lmx,png,mid,wav}

Splits are by piece (hash of seed and piece id), excerpts and procedural pieces come from the
seed, so the same arguments give the same manifest. Every file is written atomically and a file
that exists is never rewritten: a rerun skips finished excerpts and completes unfinished ones (for
instance the LMX files, once the LMX linearizer is installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from umt.data import excerpts as ex
from umt.data.render import STAFF_HEIGHT_PX
from umt.errors import UserError
from umt.musicscore.metadata import prompt, score_fields
from umt.tokenizers import lmx
from umt.utils.io import atomic_write_bytes, atomic_write_text, remove_partial_files

MANIFEST = "manifest.jsonl"
PARTIAL_MANIFEST = "manifest.partial.jsonl"
FAILURES = "failures.jsonl"
PROCEDURAL_MEASURES = 12


@dataclass
class BuildOptions:
    out: str
    sources: list[str] = field(default_factory=lambda: sorted(ex.SOURCES))
    max_pieces: int | None = None  # per corpus source
    procedural: int = 0  # number of generated piano pieces
    max_excerpts_per_piece: int | None = 8
    max_measures: int = 4  # an excerpt is 1..max_measures measures long
    seed: int = 0
    workers: int = 1
    audio: bool = True
    lmx: bool = True
    degrade_copies: int = 0  # degraded PNG variants per excerpt (training augmentation)
    staff_height: int = STAFF_HEIGHT_PX  # px from a staff's top line to its bottom line in the PNGs
    extra_files: list[str] = field(default_factory=list)  # user score files (source "files")
    progress: bool = True


@dataclass
class BuildSummary:
    built: int = 0
    skipped: int = 0
    failed: int = 0
    manifest: str = ""
    failures: list[dict] = field(default_factory=list)

    def line(self) -> str:
        text = f"corpus: {self.built} excerpts built, {self.skipped} already done, {self.failed} failed"
        return text + (f" (reasons in {Path(self.manifest).parent / FAILURES})" if self.failed else "")


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def select_pieces(options: BuildOptions) -> list[ex.PieceRef]:
    pieces: list[ex.PieceRef] = []
    by_source: dict[str, list[ex.PieceRef]] = {}
    for ref in ex.corpus_pieces(options.sources):
        by_source.setdefault(ref.source, []).append(ref)
    for source in sorted(by_source):
        refs = by_source[source]
        if options.max_pieces is not None and len(refs) > options.max_pieces:
            rng = np.random.default_rng(_stable_int(options.seed, "pieces", source))
            keep = np.sort(rng.choice(len(refs), size=options.max_pieces, replace=False))
            refs = [refs[i] for i in keep]
        pieces.extend(refs)
    for index in range(options.procedural):
        pieces.append(ex.PieceRef(piece=f"procedural/{index:05d}", source="procedural"))
    stems = Counter(Path(path).stem for path in options.extra_files)
    for path in options.extra_files:
        pieces.append(ex.PieceRef(piece=_file_piece(Path(path), stems), source="files", path=str(path)))
    return pieces


def _file_piece(path: Path, stems: Counter) -> str:
    """``files/STEM``; when two of ``--files`` share a stem (``a/score.xml``, ``b/score.xml``), each
    also carries a hash of its absolute path, so neither overwrites (or counts as) the other."""
    if stems[path.stem] == 1:
        return f"files/{path.stem}"
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"files/{path.stem}-{digest}"


def _load(ref: ex.PieceRef, seed: int):
    if ref.source == "procedural":
        from umt.data.procedural import generate_piano_piece

        return generate_piano_piece(_stable_int(seed, ref.piece), PROCEDURAL_MEASURES)
    return ex.load_score(ref)


def _file_done(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def process_piece(ref: ex.PieceRef, options: BuildOptions) -> tuple[list[dict], list[dict], int, int]:
    """Make every missing file of every excerpt of one piece.

    Returns (manifest records, failures, excerpts built, excerpts skipped as already complete).
    """
    with warnings.catch_warnings():
        # music21 warns about odd notation on its way to an exception or a fine result; what fails
        # is reported in failures.jsonl, so its warnings would only repeat that on the console.
        warnings.simplefilter("ignore", UserWarning)
        return _process_piece(ref, options)


def _process_piece(ref: ex.PieceRef, options: BuildOptions) -> tuple[list[dict], list[dict], int, int]:
    out = Path(options.out)
    split = ex.assign_split(ref.piece, options.seed)
    records: list[dict] = []
    failures: list[dict] = []
    built = skipped = 0
    try:
        score = _load(ref, options.seed)
        rng = np.random.default_rng(_stable_int(options.seed, "excerpts", ref.piece))
        specs = ex.plan_excerpts(score, rng, options.max_excerpts_per_piece, options.max_measures)
    except Exception as error:  # a piece that cannot be read is reported, the others go on
        reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        if ref.path and not reason.startswith(str(ref.path)):
            reason = f"{ref.path}: {reason}"
        return [], [{"piece": ref.piece, "key": None, "stage": "load", "reason": reason}], 0, 0
    linearize = lmx.linearize if options.lmx else None
    piece_dir = Path(split) / ex.slug(ref.piece)
    piece_fields = score_fields(score, ref.piece)
    for spec in specs:
        key = f"{ex.slug(ref.piece)}-{spec.start:04d}-{spec.end:04d}"
        rel = {
            "musicxml": piece_dir / f"{key}.musicxml",
            "lmx": piece_dir / f"{key}.lmx" if linearize is not None else None,
            "png": piece_dir / f"{key}.png",
            "mid": piece_dir / f"{key}.mid",
            "wav": piece_dir / f"{key}.wav" if options.audio else None,
            "text": piece_dir / f"{key}.txt",
        }
        degraded = [piece_dir / f"{key}.degraded{i}.png" for i in range(options.degrade_copies)]
        wanted = [p for p in [*rel.values(), *degraded] if p is not None]
        offset = float(score.parts[0].getElementsByClass("Measure")[spec.start].getOffsetInHierarchy(score))
        qpm = ex.tempo_at(score, offset)
        record = {
            "key": key,
            "piece": ref.piece,
            "split": split,
            "source": ref.source,
            "measures": [spec.first_number, spec.last_number],
            "measure_index": [spec.start, spec.end],
            "tempo_qpm": qpm,
            **{name: (None if path is None else str(path)) for name, path in rel.items()},
            "png_degraded": [str(p) for p in degraded],
            "metadata": piece_fields,
        }
        if all(_file_done(out / p) for p in wanted):
            records.append(record)
            skipped += 1
            continue
        stage = "excerpt"
        try:
            if not _file_done(out / rel["text"]):
                stage = "text"  # the piece's metadata prompt (MusicScore's text-to-image task)
                atomic_write_text(out / rel["text"], prompt(piece_fields) + "\n")
            excerpt = ex.slice_measures(score, spec)
            stage = "musicxml"
            xml_path = out / rel["musicxml"]
            if not _file_done(xml_path):
                atomic_write_bytes(xml_path, ex.to_musicxml(ex.piano_view(excerpt)))
            xml = xml_path.read_bytes()
            if rel["lmx"] is not None and not _file_done(out / rel["lmx"]):
                stage = "lmx"
                tokens = linearize(str(xml_path))
                if not tokens:
                    raise ValueError("empty LMX")
                atomic_write_text(out / rel["lmx"], " ".join(tokens) + "\n")
            stage = "png"
            png_path = out / rel["png"]
            if not _file_done(png_path) or any(not _file_done(out / p) for p in degraded):
                from umt.data.render import png_bytes, render_musicxml

                image = render_musicxml(xml, staff_height=options.staff_height)
                if not _file_done(png_path):
                    atomic_write_bytes(png_path, png_bytes(image))
                for index, path in enumerate(degraded):
                    if not _file_done(out / path):
                        from umt.data.degrade import degrade_image

                        noisy = degrade_image(image, _stable_int(options.seed, key, "degrade", index))
                        atomic_write_bytes(out / path, png_bytes(noisy))
            stage = "midi"
            from umt.data import synth

            mid_path = out / rel["mid"]
            if not _file_done(mid_path):
                midi = synth.score_to_midi(excerpt, qpm)
                if not any(instrument.notes for instrument in midi.instruments):
                    raise ValueError("excerpt has no notes")
                synth.write_midi(midi, mid_path)
            if rel["wav"] is not None and not _file_done(out / rel["wav"]):
                stage = "audio"
                synth.midi_to_wav(mid_path, out / rel["wav"])
        except Exception as error:
            reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            failures.append({"piece": ref.piece, "key": key, "stage": stage, "reason": reason})
            continue
        records.append(record)
        built += 1
    return records, failures, built, skipped


def _append_lines(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def build_corpus(options: BuildOptions) -> BuildSummary:
    """Build (or finish) the corpus in ``options.out``; see the module docstring."""
    from tqdm import tqdm

    if options.audio:
        from umt.data.synth import FluidSynthMissing, fluidsynth_binary

        if fluidsynth_binary() is None:
            raise FluidSynthMissing()
    if options.workers < 1:
        raise UserError(f"--workers must be at least 1, not {options.workers}")
    if options.max_measures < 1:
        raise UserError(f"--max-measures must be at least 1, not {options.max_measures}")
    if not 8 <= options.staff_height <= 200:
        raise UserError(f"--staff-height must be 8 to 200 px, not {options.staff_height}")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partial_files(out)  # a killed run's half-written files
    pieces = select_pieces(options)
    if not pieces:
        raise UserError("no pieces selected (check --sources, --max-pieces and --procedural)")
    partial = out / PARTIAL_MANIFEST
    summary = BuildSummary(manifest=str(out / MANIFEST))
    records: dict[str, dict] = {}

    def collect(result: tuple[list[dict], list[dict], int, int]) -> None:
        piece_records, piece_failures, built, skipped = result
        _append_lines(partial, piece_records)
        for record in piece_records:
            records[record["key"]] = record
        summary.failures.extend(piece_failures)
        summary.built += built
        summary.skipped += skipped

    bar = tqdm(total=len(pieces), unit="piece", desc="corpus", disable=not options.progress)
    if options.workers == 1:
        for ref in pieces:
            collect(process_piece(ref, options))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=options.workers) as pool:
            futures = [pool.submit(process_piece, ref, options) for ref in pieces]
            for future in as_completed(futures):
                collect(future.result())
                bar.update()
    bar.close()
    summary.failed = len(summary.failures)
    summary.failures.sort(key=lambda row: (row["piece"], row["key"] or ""))
    lines = [json.dumps(records[key], sort_keys=True) for key in sorted(records)]
    atomic_write_text(out / MANIFEST, "".join(line + "\n" for line in lines))
    atomic_write_text(
        out / FAILURES, "".join(json.dumps(row, sort_keys=True) + "\n" for row in summary.failures)
    )
    settings = {k: v for k, v in asdict(options).items() if k not in ("out", "progress", "workers")}
    atomic_write_text(
        out / "corpus.json", json.dumps({"format": "umt-corpus/1", **settings}, indent=2) + "\n"
    )
    partial.unlink(missing_ok=True)
    return summary


def read_manifest(out: str | Path) -> list[dict]:
    path = Path(out) / MANIFEST
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
