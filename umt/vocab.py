"""The unified vocabulary: one id space for score images, audio, LMX and MIDI events.

Every sequence position is a *row* of ``K`` ids (``K = num_codebooks``, 4 in the paper). Image
and audio codes fill all ``K`` codebooks; single-stream modalities (LMX, MIDI) put their id in
codebook 0 and :data:`PAD_ID` in codebooks ``1..K-1``. Special rows (SOS, EOS, SEP, image height)
likewise carry their id in codebook 0 and PAD elsewhere.

The layout is a list of typed, disjoint :class:`TokenRange` s, in this order::

    pad | sos[4] | eos[4] | sep | height[1..H] | image/cb0..cbK | audio/cb0..cbK | lmx[224]
        | midi/shift[0..S] | midi/pitch[128] | midi/velocity[2] | midi/tie | midi/program[128]
        | midi/drum[128]

Sizes come from :class:`VocabConfig`, so the paper's vocabulary and the tiny ones in the tests are
the same code. :meth:`Vocabulary.layout_hash` fingerprints the layout; every artifact that stores
ids (token shards, checkpoints) records it, and loading refuses a mismatch. The golden-id tests in
``tests/test_vocab.py`` freeze the default layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

MODALITIES: tuple[str, ...] = ("image", "audio", "lmx", "midi")
"""The four modalities, in the order used by SOS/EOS ids and modality embeddings."""

MULTI_STREAM_MODALITIES: frozenset[str] = frozenset({"image", "audio"})

PAD_ID = 0
LAYOUT_VERSION = 1

MIDI_NUM_PITCHES = 128
MIDI_NUM_VELOCITIES = 2  # note-off (0) and note-on (1), as in MT3 / YourMT3
MIDI_NUM_PROGRAMS = 128


@dataclass(frozen=True)
class VocabConfig:
    """Sizes of the unified vocabulary (the defaults are the paper's)."""

    num_codebooks: int = 4
    """K: ids per sequence position."""
    image_codebooks: int = 4
    image_codebook_size: int = 1024
    audio_codebooks: int = 4
    audio_codebook_size: int = 1024
    max_image_height: int = 26
    """Largest system height in token rows (416 px at 16x downsampling)."""
    midi_max_shift: int = 2000
    """Largest absolute time shift in 10 ms ticks (2000 -> 2001 shift values, 20 s segments)."""

    def __post_init__(self) -> None:
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {self.num_codebooks}")
        for name in ("image_codebooks", "audio_codebooks"):
            value = getattr(self, name)
            if not 1 <= value <= self.num_codebooks:
                raise ValueError(f"{name} must be in 1..num_codebooks={self.num_codebooks}, got {value}")
        for name in ("image_codebook_size", "audio_codebook_size", "max_image_height"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.midi_max_shift < 1:
            raise ValueError(f"midi_max_shift must be >= 1, got {self.midi_max_shift}")


@dataclass(frozen=True)
class TokenRange:
    """A contiguous block of ids ``[start, start + size)`` holding values ``0..size-1``."""

    name: str
    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    def id(self, value: int) -> int:
        """The id of ``value`` (``0 <= value < size``)."""
        if not 0 <= value < self.size:
            raise ValueError(f"{self.name}: value {value} outside 0..{self.size - 1}")
        return self.start + value

    def value(self, token_id: int) -> int:
        """The value an id in this range stands for."""
        if not self.contains(token_id):
            raise ValueError(f"id {token_id} is not in range {self.name} [{self.start}, {self.stop})")
        return token_id - self.start

    def contains(self, token_id: int) -> bool:
        return self.start <= token_id < self.stop


@dataclass(frozen=True)
class Vocabulary:
    """The unified id space built from a :class:`VocabConfig`."""

    config: VocabConfig = field(default_factory=VocabConfig)

    # ------------------------------------------------------------------ layout
    @cached_property
    def ranges(self) -> dict[str, TokenRange]:
        """All ranges by name, in layout order."""
        cfg = self.config
        sizes: list[tuple[str, int]] = [
            ("pad", 1),
            ("sos", len(MODALITIES)),
            ("eos", len(MODALITIES)),
            ("sep", 1),
            ("height", cfg.max_image_height),
        ]
        sizes += [(f"image/cb{k}", cfg.image_codebook_size) for k in range(cfg.image_codebooks)]
        sizes += [(f"audio/cb{k}", cfg.audio_codebook_size) for k in range(cfg.audio_codebooks)]
        sizes += [
            ("lmx", len(LMX_TOKENS)),
            ("midi/shift", cfg.midi_max_shift + 1),
            ("midi/pitch", MIDI_NUM_PITCHES),
            ("midi/velocity", MIDI_NUM_VELOCITIES),
            ("midi/tie", 1),
            ("midi/program", MIDI_NUM_PROGRAMS),
            ("midi/drum", MIDI_NUM_PITCHES),
        ]
        ranges: dict[str, TokenRange] = {}
        start = 0
        for name, size in sizes:
            ranges[name] = TokenRange(name, start, size)
            start += size
        return ranges

    def __getitem__(self, name: str) -> TokenRange:
        try:
            return self.ranges[name]
        except KeyError:
            raise KeyError(f"no token range {name!r}; ranges: {', '.join(self.ranges)}") from None

    @property
    def size(self) -> int:
        """Total number of ids (the embedding / logit width)."""
        return next(reversed(self.ranges.values())).stop

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    # ------------------------------------------------------------ special ids
    def sos(self, modality: str) -> int:
        return self["sos"].id(modality_index(modality))

    def eos(self, modality: str) -> int:
        return self["eos"].id(modality_index(modality))

    @property
    def sep(self) -> int:
        return self["sep"].start

    def height(self, rows: int) -> int:
        """The id of an image-height token for a system ``rows`` token rows high (1-based)."""
        if not 1 <= rows <= self.config.max_image_height:
            raise ValueError(f"image height {rows} outside 1..{self.config.max_image_height}")
        return self["height"].id(rows - 1)

    def height_value(self, token_id: int) -> int:
        return self["height"].value(token_id) + 1

    def is_special(self, token_id: int) -> bool:
        """PAD, SOS, EOS, SEP or a height token."""
        return token_id < self["height"].stop

    # ------------------------------------------------------------- codebooks
    def codebook_range(self, modality: str, codebook: int) -> TokenRange:
        """The range of ``modality`` codes in ``codebook`` (image and audio only)."""
        if modality not in MULTI_STREAM_MODALITIES:
            raise ValueError(f"{modality} is single-stream: it has no codebook ranges")
        return self[f"{modality}/cb{codebook}"]

    def modality_codebooks(self, modality: str) -> int:
        """How many of the K codebooks the modality uses (1 for single-stream ones)."""
        check_modality(modality)
        if modality == "image":
            return self.config.image_codebooks
        if modality == "audio":
            return self.config.audio_codebooks
        return 1

    def codes_to_ids(self, modality: str, codes: np.ndarray) -> np.ndarray:
        """Codebook indices ``[..., C]`` (``C`` = the modality's codebooks) to id rows ``[..., K]``."""
        codes = np.asarray(codes)
        num = self.modality_codebooks(modality)
        if codes.shape[-1] != num:
            raise ValueError(f"{modality} codes need {num} codebooks on the last axis, got {codes.shape}")
        size = self[f"{modality}/cb0"].size
        if codes.size and (codes.min() < 0 or codes.max() >= size):
            raise ValueError(f"{modality} codes must be in 0..{size - 1}")
        rows = np.full((*codes.shape[:-1], self.num_codebooks), PAD_ID, dtype=np.int64)
        for k in range(num):
            rows[..., k] = codes[..., k] + self[f"{modality}/cb{k}"].start
        return rows

    def ids_to_codes(self, modality: str, rows: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`codes_to_ids` for rows that hold only ``modality`` codes."""
        rows = np.asarray(rows)
        num = self.modality_codebooks(modality)
        codes = np.empty((*rows.shape[:-1], num), dtype=np.int64)
        for k in range(num):
            token_range = self[f"{modality}/cb{k}"]
            column = rows[..., k]
            if column.size and ((column < token_range.start) | (column >= token_range.stop)).any():
                raise ValueError(f"codebook {k} holds ids outside {token_range.name}")
            codes[..., k] = column - token_range.start
        return codes

    # ----------------------------------------------------------------- rows
    def single_stream_rows(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Ids ``[T]`` of a single-stream sequence to rows ``[T, K]`` (PAD in codebooks 1..K-1)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows = np.full((ids.shape[0], self.num_codebooks), PAD_ID, dtype=np.int64)
        rows[:, 0] = ids
        return rows

    def special_row(self, token_id: int) -> np.ndarray:
        """One row ``[K]`` carrying a special id in codebook 0."""
        return self.single_stream_rows([token_id])[0]

    # ------------------------------------------------------------------ LMX
    @cached_property
    def _lmx_index(self) -> dict[str, int]:
        start = self["lmx"].start
        return {token: start + index for index, token in enumerate(LMX_TOKENS)}

    def lmx_id(self, token: str) -> int:
        try:
            return self._lmx_index[token]
        except KeyError:
            raise ValueError(f"{token!r} is not an LMX token") from None

    def lmx_token(self, token_id: int) -> str:
        return LMX_TOKENS[self["lmx"].value(token_id)]

    # ----------------------------------------------------------------- masks
    def allowed_ids(self, modality: str, codebook: int) -> list[TokenRange | int]:
        """Ranges and single ids a ``modality`` target may hold in ``codebook``."""
        check_modality(modality)
        if not 0 <= codebook < self.num_codebooks:
            raise ValueError(f"codebook {codebook} outside 0..{self.num_codebooks - 1}")
        num = self.modality_codebooks(modality)
        if codebook >= num:
            return [PAD_ID]
        if modality in MULTI_STREAM_MODALITIES:
            content: list[TokenRange | int] = [self[f"{modality}/cb{codebook}"]]
        elif modality == "lmx":
            content = [self["lmx"]]
        else:
            content = [r for name, r in self.ranges.items() if name.startswith("midi/")]
        if codebook == 0:
            content.append(self.eos(modality))
            if modality == "image":
                content += [self.sep, self["height"]]
        else:
            # Codebooks 1.. of a special row (EOS, SEP, height) are PAD.
            content.append(PAD_ID)
        return content

    def allowed_mask(self, modality: str) -> np.ndarray:
        """Boolean mask ``[K, V]``: which ids a ``modality`` target may hold in each codebook."""
        mask = np.zeros((self.num_codebooks, self.size), dtype=bool)
        for codebook in range(self.num_codebooks):
            for item in self.allowed_ids(modality, codebook):
                if isinstance(item, TokenRange):
                    mask[codebook, item.start : item.stop] = True
                else:
                    mask[codebook, item] = True
        return mask

    # ------------------------------------------------------------------ hash
    def describe(self) -> dict:
        """A JSON-able description of the layout (what the hash covers)."""
        return {
            "layout_version": LAYOUT_VERSION,
            "config": asdict(self.config),
            "modalities": list(MODALITIES),
            "ranges": [[r.name, r.start, r.size] for r in self.ranges.values()],
            "lmx_tokens": list(LMX_TOKENS),
        }

    @cached_property
    def layout_hash(self) -> str:
        """A stable 16-hex-digit fingerprint of the layout."""
        canonical = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size}, K={self.num_codebooks}, hash={self.layout_hash})"


def modality_index(modality: str) -> int:
    """Position of ``modality`` in :data:`MODALITIES`, with a did-you-mean error."""
    check_modality(modality)
    return MODALITIES.index(modality)


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        from umt.utils.registry import did_you_mean

        raise ValueError(f"unknown modality {modality!r}{did_you_mean(modality, MODALITIES)}")


def vocabulary_from_dict(values: dict | None) -> Vocabulary:
    """Build a vocabulary from a plain mapping of :class:`VocabConfig` fields (e.g. a Hydra node)."""
    return Vocabulary(VocabConfig(**dict(values or {})))


def default_vocabulary() -> Vocabulary:
    """The paper's vocabulary: K=4, 4 x 1024 image and audio codes, 20 s MIDI segments."""
    return _DEFAULT


_DEFAULT = Vocabulary()


def iter_ranges(vocab: Vocabulary, prefix: str) -> Iterable[TokenRange]:
    """The ranges whose name starts with ``prefix`` (e.g. ``"midi/"``)."""
    return (r for name, r in vocab.ranges.items() if name.startswith(prefix))
