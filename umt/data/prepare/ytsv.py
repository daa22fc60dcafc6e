"""YTSV, the paper's YouTube score-video pairs: score-following videos cut into (systems, audio)
examples for image<->audio.

Published layout (MALerLab/youtube-score-video-dataset: the metadata is published, the videos
are the user's own download):

* ``ROOT/metadata/ytsv_metadata.csv`` (or ``ROOT/ytsv_metadata.csv``): one row per video, columns
  ``YT Id, Title of Video, User, Duration, Composer Full Name, Title of Piece, ..., Staff Count``
  (``Staff Count`` is ``MELODY-PIANO`` staves, ``0-2`` for piano solo); the columns are copied
  into the records in snake case;
* ``ROOT/mp4/<YT Id>.mp4``, or ``ROOT/<Staff Count>/mp4/<YT Id>.mp4`` where the dataset's own
  pipeline has moved it (``.webm`` and ``.mkv`` are read too);
* optionally ``ROOT/test_included_yt_ids.csv`` (U-MusT's ``dataset_pair_paths/`` file, column
  ``YT Id``): videos of pieces in the AMT test sets, which must be in ``test``.

Splits follow U-MusT's ``scripts/make_youtube_split_json.py``: the other videos, sorted by id and
shuffled with Python's ``random.seed(0)``, give the first 85 % of *all* ids to ``train``, the next
7 % to ``valid``, the rest to ``test`` with the listed ones. ``--splits`` replaces that.

Each video is one work unit:

1. its slides are found by frame differencing (:mod:`umt.data.video`: hard cuts and crossfades);
2. each slide's image is cut into systems by the staff-line detector (:mod:`umt.data.systems`:
   projection profiles, staves grouped into systems); every system is scaled to a staff height of
   :data:`~umt.data.render.STAFF_HEIGHT_PX` px, and the slide's systems are stacked top to bottom
   into one PNG that records their row ranges (:func:`umt.tokenizers.image.write_systems_png`):
   baked, it becomes the systems' token grids one after the other, ``sep`` between, as U-MusT
   concatenates its per-system token files;
3. the sound is cut to the slide's time span (exact sample slices at 44.1 kHz);
4. the paper's filters drop a slide, listed in ``left_out.jsonl`` with why: too dark or blank
   (pixel intensity), no staff, overlapping system boxes, sound over
   :data:`MAX_AUDIO_SECONDS`, silence (a silent intro or outro), more than :data:`MAX_PIXELS`
   pixels of systems.

Records: ``{"key": "YTID/NNNN", "image", "audio", "start_seconds", "end_seconds", "systems", ...}``
with ``NNNN`` the slide's index in the video. No YOLO system detector is included: the classical
detector is the one this converter uses.
"""

from __future__ import annotations

import csv
import itertools
import random
import re
from typing import Any

import numpy as np

from umt.data.prepare.base import Converted, Converter, WorkUnit
from umt.data.prepare.recordings import SAMPLE_RATE, write_flac
from umt.errors import UserError
from umt.utils.io import atomic_write_bytes

METADATA_FILES = ("metadata/ytsv_metadata.csv", "ytsv_metadata.csv")
TEST_IDS_FILE = "test_included_yt_ids.csv"
ID_COLUMN = "YT Id"
STAFF_COUNT_COLUMN = "Staff Count"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv")
SPLIT_RATIOS = (("train", 0.85), ("valid", 0.07))
MAX_AUDIO_SECONDS = 20.0
MAX_PIXELS = 256_000
SILENCE_RMS = 10 ** (-50 / 20)
"""-50 dBFS, the YTSV pipeline's silence threshold: a slide whose sound stays under it is an intro,
an outro or a pause."""
DARK_MEAN, BLANK_MEAN = 150.0, 254.0
"""A score slide is mostly white paper with ink: a mean grey under 150 is a photo or a title card, over
254 a blank page."""


class YtsvConverter(Converter):
    name = "ytsv"
    description = "YouTube score-following videos -> per-slide system images with their audio"
    missing_source = "listed in the metadata, but no video file"

    def units(self) -> list[WorkUnit]:
        rows = self._metadata()
        splits = paper_splits([row[ID_COLUMN] for row in rows], self._test_ids())
        units, self.left_out = [], []
        for row in rows:
            video_id = row[ID_COLUMN]
            extra = {_snake(k): v for k, v in row.items() if k and k != ID_COLUMN and v}
            sources = {"video": self._video(video_id, row.get(STAFF_COUNT_COLUMN) or "")}
            units.append(WorkUnit(video_id, splits[video_id], video_id, sources, extra))
        return units

    def _metadata(self) -> list[dict[str, str]]:
        path = next((self.root / f for f in METADATA_FILES if (self.root / f).is_file()), None)
        if path is None:
            raise UserError(
                f"no {METADATA_FILES[0]}: not a YTSV folder (see umt.data.prepare.ytsv)", self.root
            )
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if ID_COLUMN not in (reader.fieldnames or []):
                raise UserError(f"lacks the column {ID_COLUMN!r}", path)
            rows = [row for row in reader if (row.get(ID_COLUMN) or "").strip()]
        for row in rows:
            row[ID_COLUMN] = row[ID_COLUMN].strip()
            if not _SAFE_ID.fullmatch(row[ID_COLUMN]):
                raise UserError(f"video id {row[ID_COLUMN]!r} is not a YouTube id", path)
        return rows

    def _test_ids(self) -> set[str]:
        path = self.root / TEST_IDS_FILE
        if not path.is_file():
            return set()
        with path.open(newline="", encoding="utf-8") as handle:
            return {row[ID_COLUMN].strip() for row in csv.DictReader(handle) if row.get(ID_COLUMN)}

    def _video(self, video_id: str, staff_count: str) -> str:
        folders = ["mp4"] + ([f"{staff_count}/mp4"] if _SAFE_ID.fullmatch(staff_count) else [])
        for folder in folders:
            for suffix in VIDEO_SUFFIXES:
                if (self.root / folder / f"{video_id}{suffix}").is_file():
                    return f"{folder}/{video_id}{suffix}"
        return f"mp4/{video_id}.mp4"  # missing: source_files names it

    def convert(self, unit: WorkUnit) -> Converted:
        from umt.data.video import find_slides, read_audio, read_frames

        video = self.source_files(unit)["video"]
        sound = read_audio(video, SAMPLE_RATE)
        fps, frames = read_frames(video)
        slides, _ = find_slides(fps, frames)
        records, dropped = [], []
        for index, slide in enumerate(slides):
            key = f"{unit.key}/{index:04d}"
            start, end = slide.start_frame / fps, slide.end_frame / fps
            audio = sound[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
            images, systems, reason = slide_example(slide.image, audio)
            if reason is not None:
                dropped.append({"key": key, "piece": unit.piece, "reason": reason})
                continue
            record = self._write(unit, index, images, audio)
            span = {"start_seconds": round(start, 6), "end_seconds": round(end, 6), "systems": systems}
            records.append({"key": key, **record, **span})
        return Converted(records, dropped)

    def _write(
        self, unit: WorkUnit, index: int, systems: list[np.ndarray], audio: np.ndarray
    ) -> dict[str, Any]:
        """Write the slide's systems (one stacked-systems PNG) and sound; the record's other fields."""
        from umt.tokenizers.image import write_systems_png

        image_path = self.output_path("image", unit, ".png", f"{unit.key}/{index:04d}")
        audio_path = self.output_path("audio", unit, ".flac", f"{unit.key}/{index:04d}")
        atomic_write_bytes(self.out / image_path, write_systems_png(systems))
        write_flac(self.out / audio_path, audio)
        return {
            "split": unit.split,
            "piece": unit.piece,
            "image": image_path.as_posix(),
            "audio": audio_path.as_posix(),
            **unit.extra,
        }


def paper_splits(video_ids: list[str], test_ids: set[str]) -> dict[str, str]:
    """Video id -> split, by U-MusT's rule (see the module docstring)."""
    ids = sorted(set(video_ids))
    others = [video_id for video_id in ids if video_id not in test_ids]
    random.Random(0).shuffle(others)
    splits = {video_id: "test" for video_id in ids}
    start = 0
    cumulative = 0.0
    for split, ratio in SPLIT_RATIOS:
        cumulative += ratio
        stop = int(len(ids) * cumulative)
        for video_id in others[start:stop]:
            splits[video_id] = split
        start = stop
    return splits


def slide_example(page: np.ndarray, audio: np.ndarray) -> tuple[list[np.ndarray], int, str | None]:
    """``(the slide's system images, how many, None)``, or ``([], count, the paper's reason to drop
    it)``."""
    from umt.data.systems import system_boxes

    mean = float(page.mean())
    if mean < DARK_MEAN:
        return [], 0, f"too dark for a score page (mean grey {mean:.0f})"
    if mean > BLANK_MEAN:
        return [], 0, "blank"
    if len(audio) / SAMPLE_RATE > MAX_AUDIO_SECONDS:
        return [], 0, f"sound of {len(audio) / SAMPLE_RATE:.1f} s, over {MAX_AUDIO_SECONDS:g} s"
    if len(audio) == 0 or float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENCE_RMS:
        return [], 0, "silent"
    boxes = system_boxes(page)
    if not boxes:
        return [], 0, "no staff"
    if any(a.bottom > b.top for a, b in itertools.pairwise(boxes)):
        return [], 0, "overlapping system boxes"
    systems = [_scaled(page[b.top : b.bottom, b.left : b.right]) for b in boxes]
    pixels = sum(system.size for system in systems)
    if pixels > MAX_PIXELS:
        return [], len(boxes), f"{pixels} pixels, over {MAX_PIXELS}"
    return systems, len(boxes), None


def _scaled(system: np.ndarray) -> np.ndarray:
    """A system crop scaled to the engraving's staff height."""
    from PIL import Image

    from umt.data.render import STAFF_HEIGHT_PX
    from umt.data.systems import staff_height

    height = staff_height(system)
    if not height:
        return system
    factor = STAFF_HEIGHT_PX / height
    size = (max(1, round(system.shape[1] * factor)), max(1, round(system.shape[0] * factor)))
    return np.asarray(Image.fromarray(system).resize(size, Image.Resampling.LANCZOS))


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
