"""Score-following videos: decode frames and audio, and find the slides (the pages or systems shown).

A score-following video shows a still image of the score for as long as it is played, then moves
to the next one by a hard cut or a crossfade. :func:`find_slides` reads the frames once:

1. **Runs.** Each frame is reduced to a grey thumbnail (block means of :data:`THUMB_BLOCK` px,
   which also evens out compression noise). A frame continues the current run while under
   :data:`STILL_FRACTION` of its thumbnail pixels differ by more than :data:`STILL_LEVEL` from the
   run's first frame (a moving cursor stays under it; a crossfade drifts past it within a few
   frames, however slow, and a cut at once).
2. **Slides.** Runs of at least :data:`MIN_STILL_SECONDS` are slides; shorter ones are frames of a
   transition. Two slides in a row that show the same image (a highlight moved in between) are
   one.
3. **Boundaries.** Between two slides, the boundary is the first frame that is closer to the next
   slide's image than to the last one's: the cut frame of a hard cut, the middle of a crossfade.

Frames are decoded with the ffmpeg that ``imageio-ffmpeg`` ships (``pip install umt[video]``), as
grey 8-bit, one at a time: memory holds one image per slide, not the video.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umt.errors import InputError, UserError

THUMB_BLOCK = 4
STILL_LEVEL = 12
STILL_FRACTION = 0.01
MIN_STILL_SECONDS = 0.3
SAME_SLIDE_LEVEL = 40
SAME_SLIDE_FRACTION = 0.01


@dataclass
class Slide:
    """One slide: frames ``[start_frame, end_frame)`` and its image (the mean of its still frames)."""

    start_frame: int
    end_frame: int
    image: np.ndarray
    """``uint8 [H, W]`` grey, full resolution."""


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("reading videos needs imageio-ffmpeg: pip install 'umt[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def read_frames(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    """``(frames per second, grey uint8 [H, W] frames)`` of a video (InputError for one ffmpeg
    cannot read)."""
    import imageio_ffmpeg

    ffmpeg_exe()
    frames = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray", bpp=1)
    try:
        meta = next(frames)
    except (RuntimeError, OSError, StopIteration) as error:
        raise InputError(
            f"not a readable video ({str(error).splitlines()[0] if str(error) else error})", path
        ) from None
    fps, (width, height) = float(meta.get("fps") or 0), meta.get("size") or (0, 0)
    if fps <= 0 or width <= 0 or height <= 0:
        raise InputError("has no video stream", path)

    def images() -> Iterator[np.ndarray]:
        try:
            for raw in frames:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
        except RuntimeError as error:
            raise InputError(f"video cut short ({error})", path) from None

    return fps, images()


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """A video's sound as mono float32 at ``sample_rate`` (InputError when it has none)."""
    command = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1"]
    command += ["-ar", str(sample_rate), "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"no readable sound ({message[-1] if message else 'ffmpeg failed'})", path)
    samples = np.frombuffer(result.stdout, dtype=np.float32)
    if samples.size == 0:
        raise InputError("has no sound", path)
    return samples.copy()


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """Block means of :data:`THUMB_BLOCK` px, float32 (Pillow's box reduction: 20x numpy's)."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame).reduce(THUMB_BLOCK), dtype=np.float32)


def _changed(a: np.ndarray, b: np.ndarray, level: float) -> float:
    """The fraction of thumbnail pixels that differ by more than ``level``."""
    return float((np.abs(a - b) > level).mean())


class _Run:
    """Consecutive frames that show one image: ``[start, end)``, the sum of their frames (until
    :meth:`freeze` keeps only their mean), and the thumbnails of the frames between the previous
    run and this one (``lead``)."""

    def __init__(self, start: int, frame: np.ndarray, thumb: np.ndarray) -> None:
        self.start, self.end = start, start + 1
        self.total: np.ndarray | None = frame.astype(np.uint32)  # 16 M frames before it could wrap
        self.mean: np.ndarray | None = None
        self.reference = thumb
        self.thumbs: list[np.ndarray] = [thumb]  # kept while the run is too short to be a slide
        self.lead: list[np.ndarray] = []

    def add(self, frame: np.ndarray, thumb: np.ndarray, min_run: int) -> None:
        assert self.total is not None
        np.add(self.total, frame, out=self.total)
        self.end += 1
        if self.end - self.start <= min_run:
            self.thumbs.append(thumb)
        else:
            self.thumbs = []

    def freeze(self) -> None:
        """Keep the mean image only (a slide's memory is one 8-bit frame)."""
        if self.total is not None:
            self.mean = np.clip(np.rint(self.total / (self.end - self.start)), 0, 255).astype(np.uint8)
            self.total = None
        self.thumbs = []

    def absorb(self, other: _Run) -> None:
        """Take in a later run that shows the same image."""
        mine, theirs = self.end - self.start, other.end - other.start
        mixed = (self.image.astype(np.float64) * mine + other.image.astype(np.float64) * theirs) / (
            mine + theirs
        )
        self.mean = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        self.end = other.end

    @property
    def image(self) -> np.ndarray:
        self.freeze()
        assert self.mean is not None
        return self.mean


def find_slides(fps: float, frames: Iterator[np.ndarray]) -> tuple[list[Slide], int]:
    """The slides of a video and its frame count (see the module docstring)."""
    min_run = max(2, round(MIN_STILL_SECONDS * fps))
    runs: list[_Run] = []
    between: list[np.ndarray] = []  # thumbnails of the frames since the last run
    current: _Run | None = None
    count = 0
    for index, frame in enumerate(frames):
        count = index + 1
        thumb = _thumbnail(frame)
        if current is not None and _changed(thumb, current.reference, STILL_LEVEL) < STILL_FRACTION:
            current.add(frame, thumb, min_run)
            continue
        if current is not None:
            between = _close(current, runs, between, min_run)
        current = _Run(index, frame, thumb)
    if current is not None:
        _close(current, runs, between, min_run)
    return _slides(runs, count), count


def _close(run: _Run, runs: list[_Run], between: list[np.ndarray], min_run: int) -> list[np.ndarray]:
    """File a finished run: a slide (merged with the last one when it shows the same image), or,
    when too short, frames of a transition. Returns the transition frames still pending."""
    if run.end - run.start < min_run:
        return between + run.thumbs
    run.freeze()
    last = runs[-1] if runs else None
    if last is not None and _changed(_thumbnail(last.image), _thumbnail(run.image), SAME_SLIDE_LEVEL) < (
        SAME_SLIDE_FRACTION
    ):
        last.absorb(run)
        return []
    run.lead = between
    runs.append(run)
    return []


def _slides(runs: list[_Run], frame_count: int) -> list[Slide]:
    slides: list[Slide] = []
    for index, run in enumerate(runs):
        start = 0 if index == 0 else _boundary(runs[index - 1], run)
        if slides:
            slides[-1].end_frame = start
        slides.append(Slide(start, frame_count, run.image))
    return slides


def _boundary(before: _Run, after: _Run) -> int:
    """The first frame after ``before`` that is closer to ``after``'s image than to ``before``'s."""
    a, b = _thumbnail(before.image), _thumbnail(after.image)
    for offset, thumb in enumerate(after.lead):
        if np.abs(thumb - b).mean() < np.abs(thumb - a).mean():
            return before.end + offset
    return after.start
