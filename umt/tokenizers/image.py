"""The score-image tokenizer: preprocessing, RQ-VAE codes, vertical flattening, artifact folders.

Pipeline for one system image (a crop holding one system of staves)::

    file --read_image--> gray uint8 [H, W]
         --preprocess--> float [1, Hc, Wc] in [-1, 1] (Hc, Wc multiples of 16)
         --encode------> codes [1, Hc/16, Wc/16, 4]
         --flatten-----> content rows [T, K]: height, col0row0, col0row1, ..., col1row0, ...

Preprocessing (as in U-MusT): grayscale; resize so the staff height (top of the top line to the
bottom of the bottom line of a 5-line staff) is 18 px when it is known or can be measured; pixels
brighter than ``median - 20`` set to white; the image placed on a white canvas with 10 px above and
12 px left of it and the right/bottom padded so that the canvas is one token (16 px) larger than
the next multiple of 16. This canvas is shift variant 0 of U-MusT's baked training tokens; the 32
variants (8 horizontal x 4 vertical one-pixel shifts up/left) are the other crops of that layout.
Systems are at most 416 px (26 token rows) high.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from umt.errors import CheckpointError, InputError, UserError
from umt.models.rqvae import RQVAE, RQVAEConfig, check_codes
from umt.utils.io import staging_dir
from umt.vocab import PAD_ID, Vocabulary

FORMAT = "umt-image-tokenizer/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FINGERPRINT_FILE = "fingerprint.txt"
LEGACY_FINGERPRINT_FILE = "fingerprint"
"""Written by earlier versions; still read."""

NUM_SHIFTS_X = 8
NUM_SHIFTS_Y = 4
NUM_VARIANTS = NUM_SHIFTS_X * NUM_SHIFTS_Y


# ================================================================================ preprocessing
@dataclass(frozen=True)
class ImagePreprocessConfig:
    """How a system image becomes the RQ-VAE's input."""

    target_staff_height: float = 18.0
    """Staff height in px after resizing (unirqvae3 in U-MusT)."""
    measure_staff_height: bool = True
    """Measure the staff height from staff lines when the caller does not give it."""
    white_offset: float = 20.0
    """Pixels brighter than ``median - white_offset`` become white (U-MusT's demo uses 20)."""
    max_height_px: int = 416
    """Largest canvas height (26 token rows); taller images are scaled down to fit."""
    downsampling: int = 16
    pad_top: int = 10
    pad_left: int = 12

    @property
    def max_content_height(self) -> int:
        """Largest image height that fits: the canvas adds one token row of margin."""
        return self.max_height_px - self.downsampling

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ImagePreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {', '.join(sorted(unknown))}")
        return cls(**values)


@contextmanager
def image_errors(path: Path) -> Iterator[None]:
    """Turn what PIL raises while opening or decoding ``path`` into one-line InputErrors naming it."""

    try:
        yield
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not an image", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"not a readable image ({error.__class__.__name__}: {error})", path) from None
    except Image.DecompressionBombError as error:
        raise InputError(f"image too large ({error})", path) from None


def read_image(path: str | Path) -> np.ndarray:
    """Read a PNG/JPG file as grayscale ``uint8 [H, W]``; unreadable or empty files raise InputError."""

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)", path)
    with image_errors(path), Image.open(path) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent pixels are paper: composite onto white before dropping alpha.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
    if gray.size == 0 or min(gray.shape) < 1:
        raise InputError("empty image", path)
    return gray


SYSTEMS_KEY = "umt:systems"
"""PNG text key of an image that stacks several systems (a score video's slide): their row ranges,
``"top-bottom,top-bottom,..."``. Such an image is tokenized as those systems, ``sep`` between."""


def write_systems_png(systems: Sequence[np.ndarray], gap: int = 8) -> bytes:
    """Systems ``uint8 [H_i, W_i]`` stacked top to bottom on white, ``gap`` px apart, as PNG bytes
    with their row ranges under :data:`SYSTEMS_KEY`."""
    import io

    from PIL import PngImagePlugin

    width = max(system.shape[1] for system in systems)
    height = sum(system.shape[0] for system in systems) + gap * (len(systems) - 1)
    page = np.full((height, width), 255, dtype=np.uint8)
    ranges, top = [], 0
    for system in systems:
        page[top : top + system.shape[0], : system.shape[1]] = system
        ranges.append(f"{top}-{top + system.shape[0]}")
        top += system.shape[0] + gap
    info = PngImagePlugin.PngInfo()
    info.add_text(SYSTEMS_KEY, ",".join(ranges))
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def system_rows(path: str | Path, height: int) -> list[tuple[int, int]] | None:
    """The row ranges a stacked-systems PNG records (None for an ordinary image)."""
    with image_errors(Path(path)), Image.open(path) as image:
        text = getattr(image, "text", {}).get(SYSTEMS_KEY) if image.format == "PNG" else None
    if not text:
        return None
    try:
        rows = [tuple(int(v) for v in part.split("-")) for part in text.split(",")]
    except ValueError:
        raise InputError(f"unreadable {SYSTEMS_KEY} rows {text[:40]!r}", path) from None
    if not rows or any(len(r) != 2 or not 0 <= r[0] < r[1] <= height for r in rows):
        raise InputError(f"{SYSTEMS_KEY} rows {text[:40]!r} do not fit the image", path)
    return rows  # type: ignore[return-value]


def stacked_systems(path: str | Path, gray: np.ndarray) -> list[np.ndarray] | None:
    """The systems of a stacked-systems PNG (its image ``gray``, cut at the rows it records), or
    None for an ordinary image."""
    rows = system_rows(path, gray.shape[0])
    return None if rows is None else [gray[top:bottom] for top, bottom in rows]


def measure_staff_height(gray: np.ndarray, min_line_fraction: float = 0.5) -> float | None:
    """Median staff height in px of a clean score image ``uint8 [H, W]``, or None if no staff found.

    Staff-line rows are rows where more than ``min_line_fraction`` of the (inked width of the)
    image is dark; adjacent such rows form one line; runs of 5 lines with near-equal spacing form a
    staff, whose height is from the top edge of its top line to the bottom edge of its bottom line.
    """
    if gray.ndim != 2 or gray.size == 0:
        return None
    # Dark = nearer the darkest ink than the paper (robust to grey, anti-aliased lines).
    paper, ink = float(np.median(gray)), float(gray.min())
    if paper - ink < 32:
        return None
    dark = gray < paper - 0.25 * (paper - ink)
    inked_columns = np.flatnonzero(dark.any(axis=0))
    if inked_columns.size == 0:
        return None
    width = inked_columns[-1] - inked_columns[0] + 1
    line_rows = dark.sum(axis=1) > min_line_fraction * width
    # Group consecutive line rows into lines: (top, bottom) inclusive.
    lines: list[tuple[int, int]] = []
    for row in np.flatnonzero(line_rows):
        if lines and row == lines[-1][1] + 1:
            lines[-1] = (lines[-1][0], int(row))
        else:
            lines.append((int(row), int(row)))
    heights: list[float] = []
    index = 0
    while index + 5 <= len(lines):
        group = lines[index : index + 5]
        centers = np.array([(top + bottom) / 2 for top, bottom in group])
        gaps = np.diff(centers)
        if gaps.min() > 0 and gaps.max() <= 1.5 * gaps.min() + 1:
            heights.append(float(group[-1][1] - group[0][0] + 1))
            index += 5
        else:
            index += 1
    return float(np.median(heights)) if heights else None


def _resize(gray: np.ndarray, ratio: float) -> np.ndarray:
    height, width = gray.shape
    new_size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    if new_size == (width, height):
        return gray
    resample = Image.Resampling.BOX if ratio < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(gray).resize(new_size, resample=resample), dtype=np.uint8)


def _ceil_to(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def preprocess(
    gray: np.ndarray, config: ImagePreprocessConfig | None = None, staff_height: float | None = None
) -> torch.Tensor:
    """Grayscale ``uint8 [H, W]`` -> RQ-VAE input ``float32 [1, Hc, Wc]`` in [-1, 1] (multiples of 16).

    ``staff_height`` (px in ``gray``) sets the resize ratio; without it the image is only shrunk
    when it is too tall.
    """
    config = config or ImagePreprocessConfig()
    gray = np.asarray(gray, dtype=np.uint8)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty grayscale image [H, W], got shape {gray.shape}")
    ratio = config.target_staff_height / staff_height if staff_height and staff_height > 0 else 1.0
    if gray.shape[0] * ratio > config.max_content_height:
        ratio = config.max_content_height / gray.shape[0]
    gray = _resize(gray, ratio)
    gray = gray.copy()
    gray[gray > np.median(gray) - config.white_offset] = 255
    stride = config.downsampling
    height, width = gray.shape
    # One token larger than the next multiple of the stride (U-MusT's layout), or larger where a
    # margin wider than a token (a small stride) would push the content off it.
    canvas_height = max(_ceil_to(height, stride) + stride, _ceil_to(config.pad_top + height, stride))
    canvas_width = max(_ceil_to(width, stride) + stride, _ceil_to(config.pad_left + width, stride))
    canvas = np.full((canvas_height, canvas_width), 255, dtype=np.uint8)
    canvas[config.pad_top : config.pad_top + height, config.pad_left : config.pad_left + width] = gray
    return torch.from_numpy(canvas).float().div_(127.5).sub_(1.0).unsqueeze(0)


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`preprocess`'s scaling: values in [-1, 1] ``[H, W]`` -> ``uint8 [H, W]``."""
    return ((x.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).numpy()


def shift_variants(x: torch.Tensor) -> list[torch.Tensor]:
    """The 32 one-pixel shift variants of a preprocessed image ``[C, H, W]`` (same shape each).

    Variant ``4 * dx + dy`` (``dx`` in 0..7, ``dy`` in 0..3) moves the content ``dx`` px left and
    ``dy`` px up, filling with white; variant 0 is ``x`` itself. The preprocessing margins (10 px
    top, 12 px left) keep the content inside.
    """
    height, width = x.shape[-2:]
    variants = []
    for dx in range(NUM_SHIFTS_X):
        for dy in range(NUM_SHIFTS_Y):
            shifted = torch.ones_like(x)
            shifted[..., : height - dy, : width - dx] = x[..., dy:, dx:]
            variants.append(shifted)
    return variants


# ==================================================================================== flattening
def flatten_grid(grid: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """One system's codes ``[H, W, C]`` -> rows ``[1 + H*W, K]``: height, then column by column.

    Within a column the rows go top to bottom; columns go left to right.
    """
    grid = np.asarray(grid)
    if grid.ndim != 3:
        raise ValueError(f"a code grid must be [H, W, C], got shape {grid.shape}")
    height = grid.shape[0]
    column_major = grid.transpose(1, 0, 2).reshape(-1, grid.shape[2])  # [W*H, C]
    return np.concatenate(
        [vocab.special_row(vocab.height(height))[None], vocab.codes_to_ids("image", column_major)]
    )


def flatten_systems(grids: Sequence[np.ndarray], vocab: Vocabulary) -> np.ndarray:
    """Systems' code grids (each ``[H_i, W_i, C]``) -> content rows ``[T, K]`` without SOS/EOS.

    ``height, col0row0, col0row1, ..., SEP, height, ...``; ``T = sum(1 + H_i*W_i) + (n - 1)``.
    """
    if not grids:
        raise ValueError("flatten_systems needs at least one code grid")
    parts: list[np.ndarray] = []
    for index, grid in enumerate(grids):
        if index:
            parts.append(vocab.special_row(vocab.sep)[None])
        parts.append(flatten_grid(grid, vocab))
    return np.concatenate(parts).astype(np.int64, copy=False)


@dataclass
class UnflattenRepairs:
    """What :func:`unflatten_with_repairs` had to fix in (model-generated) rows."""

    partial_column_tokens: int = 0
    """Code rows dropped because they did not complete a column."""
    stray_specials: int = 0
    """Special rows (SOS, PAD, a repeated height ...) ignored."""
    foreign_rows: int = 0
    """Rows of another modality (e.g. LMX ids) ignored."""
    invalid_codes: int = 0
    """Codebook 1..C-1 entries that were not codes of their codebook, replaced by code 0."""
    headless_code_rows: int = 0
    """Code rows before any height token, dropped."""
    implicit_separators: int = 0
    """Height tokens after codes without a SEP: taken as the start of a new system."""

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def unflatten_with_repairs(rows: np.ndarray, vocab: Vocabulary) -> tuple[list[np.ndarray], UnflattenRepairs]:
    """Content rows ``[T, K]`` -> (code grids, each ``[H, W, C]``; the repairs made).

    Tolerant of model output: reading stops at an EOS; a leading SOS is skipped; other stray
    specials and foreign ids are ignored; a trailing partial column is dropped. Every such fix is
    counted in the returned :class:`UnflattenRepairs`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != vocab.num_codebooks:
        raise ValueError(f"rows must be [T, {vocab.num_codebooks}], got shape {rows.shape}")
    num = vocab.modality_codebooks("image")
    ranges = [vocab.codebook_range("image", k) for k in range(num)]
    eos_ids = {vocab.eos(m) for m in vocab.modalities}
    sos_ids = {vocab.sos(m) for m in vocab.modalities}
    height_range = vocab["image/height"]
    repairs = UnflattenRepairs()
    grids: list[np.ndarray] = []
    height: int | None = None
    codes: list[np.ndarray] = []

    def close() -> None:
        nonlocal height, codes
        if height is not None and codes:
            usable = len(codes) - len(codes) % height
            repairs.partial_column_tokens += len(codes) - usable
            if usable:
                block = np.stack(codes[:usable])  # [W*H, C]
                grids.append(block.reshape(usable // height, height, num).transpose(1, 0, 2).copy())
        height, codes = None, []

    for position, row in enumerate(rows):
        first = int(row[0])
        if first in eos_ids:
            break
        if first == vocab.sep:
            close()
        elif height_range.contains(first):
            if codes:
                repairs.implicit_separators += 1
                close()
            elif height is not None:
                repairs.stray_specials += 1
            height = vocab.height_value(first)
        elif ranges[0].contains(first):
            if height is None:
                repairs.headless_code_rows += 1
                continue
            code = np.empty(num, dtype=np.int64)
            code[0] = first - ranges[0].start
            for k in range(1, num):
                if ranges[k].contains(int(row[k])):
                    code[k] = int(row[k]) - ranges[k].start
                else:
                    code[k] = 0
                    repairs.invalid_codes += 1
            codes.append(code)
        elif first in sos_ids and position == 0:
            continue
        elif vocab.is_special(first):
            if first == PAD_ID and not row.any():
                continue  # padding rows after the content
            repairs.stray_specials += 1
        else:
            repairs.foreign_rows += 1
    close()
    return grids, repairs


def unflatten_rows(rows: np.ndarray, vocab: Vocabulary) -> list[np.ndarray]:
    """Inverse of :func:`flatten_systems`: content rows ``[T, K]`` -> code grids ``[H, W, C]``."""
    return unflatten_with_repairs(rows, vocab)[0]


def image_positions(rows: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The 2-D position ``(column, row)`` of each content row: ``int64 [T, 2]``.

    Image codes get 1-based positions within their system (``(c + 1, r + 1)``), following the
    column-major order of :func:`flatten_systems`; every other row (height, SEP, ...) gets ``(0, 0)``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    positions = np.zeros((rows.shape[0], 2), dtype=np.int64)
    cb0 = vocab.codebook_range("image", 0)
    height_range = vocab["image/height"]
    height, count = 1, 0
    for index, first in enumerate(rows[:, 0].tolist()):
        if height_range.contains(first):
            height, count = vocab.height_value(first), 0
        elif first == vocab.sep:
            count = 0
        elif cb0.contains(first):
            positions[index] = (count // height + 1, count % height + 1)
            count += 1
    return positions


# ===================================================================================== tokenizer
def _state_dict_for_saving(model: RQVAE) -> dict[str, torch.Tensor]:
    # Clone: a shared codebook appears under several names, which safetensors refuses to alias.
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ImageTokenizer:
    """Score-image tokenizer: an RQ-VAE plus its preprocessing (implements ``NeuralTokenizer``)."""

    model: RQVAE
    preprocess_config: ImagePreprocessConfig = field(default_factory=ImagePreprocessConfig)
    modality: str = "image"

    def __post_init__(self) -> None:
        self.model.eval()
        if self.preprocess_config.downsampling != self.model.config.downsampling:
            self.preprocess_config = ImagePreprocessConfig(
                **{**self.preprocess_config.to_dict(), "downsampling": self.model.config.downsampling}
            )
        self._fingerprint: str | None = None

    @property
    def config(self) -> RQVAEConfig:
        return self.model.config

    @property
    def downsampling(self) -> int:
        return self.model.config.downsampling

    # ---------------------------------------------------------------- codes
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``float [B, 1, H, W]`` in [-1, 1] (H, W multiples of 16) -> codes ``[B, H/16, W/16, K]``."""
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(
                f"images must be [B, {self.config.in_channels}, H, W], got {tuple(images.shape)}"
            )
        f = self.downsampling
        if images.shape[-2] % f or images.shape[-1] % f:
            raise ValueError(
                f"image height and width must be multiples of {f}, got {tuple(images.shape[-2:])}"
            )
        self.model.eval()
        parameter = next(self.model.parameters())
        return self.model.get_codes(images.to(parameter.device, parameter.dtype)).cpu()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h, w, K]`` -> images ``float [B, 1, h*16, w*16]`` (not clamped)."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        check_codes(codes, self.config)
        self.model.eval()
        device = next(self.model.parameters()).device
        return self.model.decode_codes(codes.to(device)).float().cpu()

    # ------------------------------------------------------ NeuralTokenizer
    @property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the model config, preprocessing and weights."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            header = {
                "format": FORMAT,
                "model": self.config.to_dict(),
                "preprocess": self.preprocess_config.to_dict(),
            }
            digest.update(json.dumps(header, sort_keys=True).encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                tensor = tensor.detach().cpu().contiguous()
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def load(self, path: str | Path, staff_height: float | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Read and preprocess one system image -> ``[1, Hc, Wc]`` in [-1, 1]; a stacked-systems
        PNG (:func:`write_systems_png`) -> one such tensor per system."""
        gray = read_image(path)
        systems = stacked_systems(path, gray)
        if systems is not None:
            return [self._preprocess(system, staff_height) for system in systems]
        return self._preprocess(gray, staff_height)

    def _preprocess(self, gray: np.ndarray, staff_height: float | None) -> torch.Tensor:
        if staff_height is None and self.preprocess_config.measure_staff_height:
            staff_height = measure_staff_height(gray)
        return preprocess(gray, self.preprocess_config, staff_height)

    def variants(self, x: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        """The 32 shift variants of a loaded image (variant 0 is ``x``); of stacked systems, variant
        ``k`` shifts every system by shift ``k``."""
        if isinstance(x, list):
            per_system = [shift_variants(system) for system in x]
            return [list(shifted) for shifted in zip(*per_system)]
        return shift_variants(x)

    def codes_of(self, x: torch.Tensor) -> np.ndarray:
        """One loaded image ``[1, H, W]`` -> code grid ``int64 [H/16, W/16, K]``."""
        return self.encode(x.unsqueeze(0))[0].cpu().numpy()

    def tokenize(self, x: torch.Tensor | list[torch.Tensor], vocab: Vocabulary) -> np.ndarray:
        """One loaded image ``[1, H, W]`` -> content rows ``[1 + H*W/256, K]`` (height token first);
        stacked systems -> their rows, ``sep`` between."""
        self._check_vocab(vocab)
        grids = [self.codes_of(system) for system in (x if isinstance(x, list) else [x])]
        for grid in grids:
            if grid.shape[0] > vocab.config.max_image_height:
                raise ValueError(
                    f"image is {grid.shape[0]} token rows high; the vocabulary allows "
                    f"{vocab.config.max_image_height} (a page whose systems were not found, or not a score?)"
                )
        return flatten_systems(grids, vocab)

    def detokenize(self, rows: np.ndarray, vocab: Vocabulary) -> torch.Tensor:
        """Content rows -> image ``[1, H, W]`` in [-1, 1]; several systems are stacked top to bottom."""
        self._check_vocab(vocab)
        grids = unflatten_rows(rows, vocab)
        if not grids:
            raise ValueError("the rows hold no complete image column")
        images = [self.decode(torch.from_numpy(grid)[None])[0].clamp(-1.0, 1.0) for grid in grids]
        width = max(image.shape[-1] for image in images)
        padded = [torch.nn.functional.pad(im, (0, width - im.shape[-1]), value=1.0) for im in images]
        return torch.cat(padded, dim=-2)

    def _check_vocab(self, vocab: Vocabulary) -> None:
        cfg = vocab.config
        if cfg.image_codebooks != self.config.num_codebooks or cfg.image_codebook_size != self.config.n_embed:
            raise ValueError(
                f"vocabulary has {cfg.image_codebooks} x {cfg.image_codebook_size} image codes; "
                f"the tokenizer makes {self.config.num_codebooks} x {self.config.n_embed}"
            )

    # ------------------------------------------------------------- artifacts
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` + ``fingerprint`` into ``directory`` atomically."""

        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()) and not (directory / CONFIG_FILE).exists():
            raise UserError("exists and is not a tokenizer folder; refusing to overwrite it", directory)
        with staging_dir(directory) as staging:
            save_file(_state_dict_for_saving(self.model), str(staging / WEIGHTS_FILE))
            config = {
                "format": FORMAT,
                "modality": self.modality,
                "model": self.config.to_dict(),
                "preprocess": self.preprocess_config.to_dict(),
                "weights_sha256": _sha256_file(staging / WEIGHTS_FILE),
                "fingerprint": self.fingerprint,
            }
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            (staging / FINGERPRINT_FILE).write_text(self.fingerprint + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> ImageTokenizer:
        """Restore a folder written by :meth:`save_pretrained`; refuse a corrupt or mismatched one."""

        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError("not a tokenizer folder (no such directory)", directory)
        fingerprint_file = directory / FINGERPRINT_FILE
        if not fingerprint_file.is_file() and (directory / LEGACY_FINGERPRINT_FILE).is_file():
            fingerprint_file = directory / LEGACY_FINGERPRINT_FILE
        for path in (directory / CONFIG_FILE, directory / WEIGHTS_FILE, fingerprint_file):
            if not path.is_file():
                raise CheckpointError(f"missing {path.name}", directory)
        try:
            config = json.loads((directory / CONFIG_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{CONFIG_FILE} is not valid JSON ({error})", directory) from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            found = config.get("format") if isinstance(config, dict) else None
            raise CheckpointError(f"{CONFIG_FILE}: format is {found!r}, expected {FORMAT!r}", directory)
        try:
            model_config = RQVAEConfig.from_dict(config["model"])
            preprocess_config = ImagePreprocessConfig.from_dict(config["preprocess"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{CONFIG_FILE}: bad model or preprocessing config ({error})", directory
            ) from None
        if _sha256_file(directory / WEIGHTS_FILE) != config.get("weights_sha256"):
            raise CheckpointError(
                f"{WEIGHTS_FILE} does not match the hash in {CONFIG_FILE} (corrupt?)", directory
            )
        try:
            state_dict = load_file(str(directory / WEIGHTS_FILE))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{WEIGHTS_FILE} is unreadable ({error})", directory) from None
        model = RQVAE(model_config)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise CheckpointError(f"weights do not match the config ({first})", directory) from None
        tokenizer = cls(model.to(device), preprocess_config)
        recorded = fingerprint_file.read_text().strip()
        if recorded != tokenizer.fingerprint or config.get("fingerprint") != recorded:
            raise CheckpointError(
                f"fingerprint {recorded!r} does not match the folder's contents ({tokenizer.fingerprint})",
                directory,
            )
        return tokenizer


# =========================================================================== reference checkpoints
def _find_one(directory: Path, pattern: str) -> Path:
    found = sorted(p for p in directory.rglob(pattern) if p.is_file() and not p.name.startswith("."))
    if not found:
        raise CheckpointError(f"no {pattern} file in the folder", directory)
    if len(found) > 1 and pattern != "config.yaml":
        names = ", ".join(str(p.relative_to(directory)) for p in found)
        raise CheckpointError(f"several {pattern} files ({names}); pass the folder of one", directory)
    return found[0]


def rqvae_config_from_reference(arch: dict) -> RQVAEConfig:
    """An ``arch`` section of a kakaobrain/rq-vae-transformer ``config.yaml`` -> :class:`RQVAEConfig`.

    Defaults that the reference fills in (``augment_arch_defaults``) are applied: L1 loss and no
    code restarts unless the file says otherwise.
    """
    if arch.get("type", "rq-vae") != "rq-vae":
        raise ValueError(f"arch.type is {arch.get('type')!r}, expected 'rq-vae'")
    hparams, dd = dict(arch.get("hparams") or {}), dict(arch.get("ddconfig") or {})
    if hparams.get("bottleneck_type", "rq") != "rq":
        raise ValueError("only the 'rq' bottleneck is supported")
    if dd.get("double_z", False):
        raise ValueError("ddconfig.double_z is not supported by the RQ-VAE")
    latent_shape, code_shape = hparams.get("latent_shape"), hparams.get("code_shape")
    if not latent_shape or not code_shape or len(latent_shape) != 3 or len(code_shape) != 3:
        raise ValueError("hparams.latent_shape and hparams.code_shape must have 3 entries")
    if list(latent_shape[:2]) != list(code_shape[:2]):
        raise ValueError("code_shape must equal latent_shape spatially (no spatial grouping of codes)")
    embed_dim = int(hparams.get("embed_dim", 64))
    if int(latent_shape[2]) != embed_dim:
        raise ValueError(f"latent_shape depth {latent_shape[2]} != embed_dim {embed_dim}")
    n_embed, decay = hparams.get("n_embed", 512), hparams.get("decay", 0.99)
    if isinstance(n_embed, list | tuple):
        if len(set(n_embed)) != 1:
            raise ValueError("codebooks of different sizes are not supported")
        n_embed = n_embed[0]
    if isinstance(decay, list | tuple):
        decay = decay[0]
    return RQVAEConfig(
        in_channels=int(dd["in_channels"]),
        out_channels=int(dd["out_ch"]),
        ch=int(dd["ch"]),
        ch_mult=tuple(dd.get("ch_mult", (1, 2, 4, 8))),
        num_res_blocks=int(dd["num_res_blocks"]),
        attn_resolutions=tuple(dd.get("attn_resolutions", ())),
        mid_attention=True,
        resolution=int(dd["resolution"]),
        dropout=float(dd.get("dropout", 0.0)),
        z_channels=int(dd["z_channels"]),
        embed_dim=embed_dim,
        n_embed=int(n_embed),
        num_codebooks=int(code_shape[2]),
        shared_codebook=bool(hparams.get("shared_codebook", False)),
        decay=float(decay),
        restart_unused_codes=bool(hparams.get("restart_unused_codes", False)),
        latent_loss_weight=float(hparams.get("latent_loss_weight", 0.25)),
        loss_type=str(hparams.get("loss_type", "l1")),
    )


def load_rqvae(
    path: str | Path,
    preprocess_config: ImagePreprocessConfig | None = None,
    device: str | torch.device = "cpu",
) -> ImageTokenizer:
    """Load a kakaobrain/rq-vae-transformer checkpoint folder (``config.yaml`` + one ``*.pt``).

    The ``.pt`` holds ``{"state_dict": ...}`` (or the state dict itself); it is read with
    ``torch.load(weights_only=True)`` and loaded with ``strict=True``.
    """
    import yaml

    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError("not a folder (expected config.yaml + a .pt file)", directory)
    config_path = _find_one(directory, "config.yaml")
    checkpoint_path = _find_one(directory, "*.pt")
    try:
        document = yaml.safe_load(config_path.read_text())
        arch = document["arch"]
        model_config = rqvae_config_from_reference(arch)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = f"unreadable config.yaml ({type(error).__name__}{where})"
        raise CheckpointError(problem, config_path) from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"config.yaml is not an RQ-VAE config ({error})", config_path) from None
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, RuntimeError, EOFError ...)
        raise CheckpointError(
            f"unreadable checkpoint ({error.__class__.__name__})", checkpoint_path
        ) from None
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError("holds no state_dict of tensors", checkpoint_path)
    model = RQVAE(model_config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"weights do not match config.yaml ({first})", checkpoint_path) from None
    preprocess_config = preprocess_config or ImagePreprocessConfig(downsampling=model_config.downsampling)
    return ImageTokenizer(model.to(device), preprocess_config)


def new_tokenizer(
    config: RQVAEConfig, preprocess_config: ImagePreprocessConfig | None = None
) -> ImageTokenizer:
    """An untrained tokenizer (random weights) with the given sizes."""
    preprocess_config = preprocess_config or ImagePreprocessConfig(downsampling=config.downsampling)
    return ImageTokenizer(RQVAE(config), preprocess_config)
