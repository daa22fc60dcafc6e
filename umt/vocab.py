"""The unified vocabulary: one id space for score images, audio, LMX and MIDI events.

Every sequence position is a *row* of ``K`` ids (``K = num_codebooks``, 4 in the paper). Image
and audio codes fill their codebooks; single-stream modalities (LMX, MIDI) put their id in
codebook 0 and :data:`PAD_ID` in codebooks ``1..K-1``. Special rows (SOS, EOS, an image's SEP and
height) likewise carry their id in codebook 0 and PAD elsewhere.

The layout (version 2) is ``PAD`` followed by one block per modality, in the order of
:attr:`VocabConfig.modalities`; each block is its :class:`~umt.modalities.ModalitySpec`'s ranges,
named ``modality/range``. The paper's layout::

    pad | image/sos eos sep height[1..H] cb0..cbK | audio/sos eos cb0..cbK | lmx/sos eos token[224]
        | midi/sos eos shift[0..S] pitch[128] velocity[2] tie program[128] drum[128]

A new modality appends its block, so every existing id stays where it was, and the layouts that do
not hold it keep their hash. Sizes come from :class:`VocabConfig`, so the paper's vocabulary and
the tiny ones in the tests are the same code. :meth:`Vocabulary.layout_hash` fingerprints the
layout; every artifact that stores ids (token shards, checkpoints, model folders) records it, and
loading refuses a mismatch. Layout 1 (all SOS and EOS ids in front) is converted by ``umt
migrate`` (:mod:`umt.migrate`). The golden-id tests in ``tests/test_vocab.py`` freeze the paper's
layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from umt.modalities import PAPER_MODALITIES, ModalitySpec, check_modality, get_spec

PAD_ID = 0
LAYOUT_VERSION = 2


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
    modalities: tuple[str, ...] = PAPER_MODALITIES
    """The modalities whose blocks the vocabulary holds, in block order (append, never reorder)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))  # a list from YAML / JSON
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be a non-empty list without repeats: {list(self.modalities)}")
        for modality in self.modalities:
            check_modality(modality)
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
    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities it holds, in block order (the order of modality indices too)."""
        return self.config.modalities

    @cached_property
    def specs(self) -> dict[str, ModalitySpec]:
        return {name: get_spec(name) for name in self.modalities}

    @cached_property
    def ranges(self) -> dict[str, TokenRange]:
        """All ranges by name (``pad``, then ``modality/range`` block by block), in layout order."""
        sizes = [("pad", 1)]
        for name, spec in self.specs.items():
            sizes += [(f"{name}/{part}", size) for part, size in spec.block(self.config)]
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
            from umt.utils.registry import did_you_mean

            raise KeyError(f"no token range {name!r}{did_you_mean(name, self.ranges)}") from None

    @property
    def size(self) -> int:
        """Total number of ids (the embedding / logit width)."""
        return next(reversed(self.ranges.values())).stop

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    def spec(self, modality: str) -> ModalitySpec:
        """The spec of a modality this vocabulary holds (did-you-mean error otherwise)."""
        try:
            return self.specs[modality]
        except KeyError:
            check_modality(modality)
            raise ValueError(
                f"modality {modality!r} is not in this vocabulary ({', '.join(self.modalities)})"
            ) from None

    def modality_index(self, modality: str) -> int:
        """Position of ``modality`` in :attr:`modalities` (its modality-embedding index)."""
        self.spec(modality)
        return self.modalities.index(modality)

    # ------------------------------------------------------------ special ids
    def sos(self, modality: str) -> int:
        self.spec(modality)
        return self[f"{modality}/sos"].start

    def eos(self, modality: str) -> int:
        self.spec(modality)
        return self[f"{modality}/eos"].start

    @property
    def sep(self) -> int:
        """The image modality's system separator."""
        return self["image/sep"].start

    def height(self, rows: int) -> int:
        """The id of an image-height token for a system ``rows`` token rows high (1-based)."""
        if not 1 <= rows <= self.config.max_image_height:
            raise ValueError(f"image height {rows} outside 1..{self.config.max_image_height}")
        return self["image/height"].id(rows - 1)

    def height_value(self, token_id: int) -> int:
        return self["image/height"].value(token_id) + 1

    @cached_property
    def special_mask(self) -> np.ndarray:
        """Boolean ``[V]``: PAD and every modality's specials (SOS, EOS, SEP, height...)."""
        mask = np.zeros(self.size, dtype=bool)
        mask[PAD_ID] = True
        for name, spec in self.specs.items():
            for part in spec.special_names(self.config):
                token_range = self[f"{name}/{part}"]
                mask[token_range.start : token_range.stop] = True
        return mask

    def is_special(self, token_id: int) -> bool:
        """PAD, or a SOS, EOS or other special id of some modality."""
        return bool(self.special_mask[token_id])

    # ------------------------------------------------------------- codebooks
    def codebook_range(self, modality: str, codebook: int) -> TokenRange:
        """The range of ``modality`` codes in ``codebook`` (multi-stream modalities only)."""
        if not self.spec(modality).multi_stream:
            raise ValueError(f"{modality} is single-stream: it has no codebook ranges")
        return self[f"{modality}/cb{codebook}"]

    def modality_codebooks(self, modality: str) -> int:
        """How many of the K codebooks the modality uses (1 for single-stream ones)."""
        return self.spec(modality).codebooks(self.config)

    def content_ranges(self, modality: str) -> list[TokenRange]:
        """The modality's content ranges (its block without the specials), in order."""
        return [self[f"{modality}/{part}"] for part, _ in self.spec(modality).content(self.config)]

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

    def text_rows(self, text: str) -> np.ndarray:
        """UTF-8 text -> rows ``[T, K]`` of its bytes (the ``text`` modality)."""
        block = self["text/byte"]
        return self.single_stream_rows([block.start + byte for byte in text.encode("utf-8")])

    def rows_text(self, rows: np.ndarray) -> str:
        """Rows of the ``text`` modality -> text (ids outside its bytes are skipped; broken UTF-8
        sequences become U+FFFD)."""
        block = self["text/byte"]
        ids = np.asarray(rows)[:, 0] if np.asarray(rows).ndim == 2 else np.asarray(rows)
        return bytes(int(i) - block.start for i in ids if block.contains(int(i))).decode("utf-8", "replace")

    def special_row(self, token_id: int) -> np.ndarray:
        """One row ``[K]`` carrying a special id in codebook 0."""
        return self.single_stream_rows([token_id])[0]

    # ------------------------------------------------------------ word lists
    @cached_property
    def _word_ids(self) -> dict[str, dict[str, int]]:
        index = {}
        for name, spec in self.specs.items():
            words = spec.words()
            if words is not None:
                start = self[f"{name}/token"].start
                index[name] = {word: start + position for position, word in enumerate(words)}
        return index

    def word_id(self, modality: str, word: str) -> int:
        """The id of a token string of a word-list modality (LMX, text)."""
        try:
            words = self._word_ids[modality]
        except KeyError:
            raise ValueError(f"{modality} has no word list") from None
        try:
            return words[word]
        except KeyError:
            raise ValueError(f"{word!r} is not a {modality} token") from None

    def word(self, modality: str, token_id: int) -> str:
        """The token string of an id of a word-list modality."""
        return self.spec(modality).words()[self[f"{modality}/token"].value(token_id)]

    def lmx_id(self, token: str) -> int:
        try:
            return self._word_ids["lmx"][token]
        except KeyError:
            raise ValueError(f"{token!r} is not an LMX token") from None

    def lmx_token(self, token_id: int) -> str:
        return self.word("lmx", token_id)

    # ----------------------------------------------------------------- masks
    def allowed_ids(self, modality: str, codebook: int) -> list[TokenRange | int]:
        """Ranges and single ids a ``modality`` target may hold in ``codebook``."""
        spec = self.spec(modality)
        if not 0 <= codebook < self.num_codebooks:
            raise ValueError(f"codebook {codebook} outside 0..{self.num_codebooks - 1}")
        if codebook >= self.modality_codebooks(modality):
            return [PAD_ID]
        if spec.multi_stream:
            content: list[TokenRange | int] = [self[f"{modality}/cb{codebook}"]]
        else:
            content = list(self.content_ranges(modality))
        if codebook == 0:
            content.append(self.eos(modality))
            content += [self[f"{modality}/{part}"] for part in spec.target_specials]
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
            "config": {**asdict(self.config), "modalities": list(self.modalities)},
            "ranges": [[r.name, r.start, r.size] for r in self.ranges.values()],
            "words": {name: list(spec.words()) for name, spec in self.specs.items() if spec.words()},
        }

    @cached_property
    def layout_hash(self) -> str:
        """A stable 16-hex-digit fingerprint of the layout."""
        canonical = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size}, K={self.num_codebooks}, hash={self.layout_hash})"


def vocabulary_from_dict(values: dict | None) -> Vocabulary:
    """Build a vocabulary from a plain mapping of :class:`VocabConfig` fields (e.g. a Hydra node)."""
    return Vocabulary(VocabConfig(**dict(values or {})))


def default_vocabulary() -> Vocabulary:
    """The paper's vocabulary: K=4, 4 x 1024 image and audio codes, 20 s MIDI segments."""
    return _DEFAULT


_DEFAULT = Vocabulary()
