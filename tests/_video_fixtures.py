"""A score-following video made in the tests: pages of systems rendered with Verovio, shown one after
another with hard cuts and crossfades, and a sine tone per page as its sound (silent where a page
is an intro or an outro). Encoded with the ffmpeg that imageio-ffmpeg ships (H.264 + AAC)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from tests._inference_fixtures import piano_musicxml, render, stack_page

FPS = 24
SIZE = (640, 480)  # width, height
CROSSFADE_FRAMES = 12


@dataclass(frozen=True)
class PagePlan:
    systems: int  # 0: a dark title card
    seconds: float
    transition: str  # "cut" or "fade" into this page
    pitch: int | None  # the tone's MIDI pitch; None: silence


def _page(systems: int, seed: int) -> np.ndarray:
    width, height = SIZE
    page = np.full((height, width), 255, dtype=np.uint8)
    if systems == 0:  # a title card: dark, with a light panel
        page[:] = 40
        page[height // 3 : height // 2, width // 4 : 3 * width // 4] = 220
        return page
    score = stack_page([render(piano_musicxml(2, seed * 10 + k)) for k in range(systems)])
    h, w = min(score.shape[0], height), min(score.shape[1], width)
    top, left = (height - h) // 2, (width - w) // 2
    page[top : top + h, left : left + w] = score[:h, :w]
    return page


def make_score_video(path: Path, plan: list[PagePlan]) -> list[int]:
    """Write the video; return the first frame of each page after the first (for a crossfade, the
    first frame that shows more of the new page than of the old one)."""
    import imageio_ffmpeg

    frames: list[np.ndarray] = []
    boundaries: list[int] = []
    previous = None
    for seed, page_plan in enumerate(plan):
        page = _page(page_plan.systems, seed)
        if previous is not None and page_plan.transition == "fade":
            steps = CROSSFADE_FRAMES
            first = len(frames)
            for k in range(1, steps + 1):
                alpha = k / (steps + 1)
                frames.append(np.rint((1 - alpha) * previous + alpha * page).astype(np.uint8))
            boundaries.append(first + next(k for k in range(1, steps + 1) if k / (steps + 1) > 0.5) - 1)
        elif previous is not None:
            boundaries.append(len(frames))
        frames += [page] * round(page_plan.seconds * FPS)
        previous = page.astype(np.float64)
    sound = _sound(plan, boundaries, len(frames))
    wav = path.with_suffix(".wav")
    soundfile.write(str(wav), sound, 44100, subtype="PCM_16")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        SIZE,
        pix_fmt_in="gray",
        fps=FPS,
        macro_block_size=1,
        audio_path=str(wav),
        audio_codec="aac",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    wav.unlink()
    return boundaries


def _sound(plan: list[PagePlan], boundaries: list[int], frame_count: int) -> np.ndarray:
    rate = 44100
    edges = [0, *boundaries, frame_count]
    sound = np.zeros(round(frame_count / FPS * rate), dtype=np.float32)
    for page_plan, start, end in zip(plan, edges, edges[1:]):
        if page_plan.pitch is None:
            continue
        first, last = round(start / FPS * rate), round(end / FPS * rate)
        t = np.arange(last - first) / rate
        sound[first:last] = 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((page_plan.pitch - 69) / 12) * t)
    return sound
