"""The audio tokenizer: a DAC codec (:mod:`umt.models.dac`) behind the :class:`NeuralTokenizer` protocol.

Token frame ``t`` always covers samples ``[hop * t, hop * (t + 1))`` (hop 512 at 44.1 kHz). Long audio
is encoded in chunks of ``chunk_frames`` frames, each encoded with ``context_frames`` frames of real
audio either side and only its centre frames kept, so a frame's code does not depend on where the
chunks fall. The encoder's receptive field reaches about 7.8 k samples (``DAC.receptive_half_width``
≈ 4 k samples ≈ 8 frames either side), so with the default 16 context frames the chunked codes equal
the whole-file codes: measured on the tiny random test model, 0 frames differ at chunk borders
(``tests/test_audio_tokenizer.py``). With less context than the receptive field, differences are
confined to the frames within ``8 - context_frames`` frames of a chunk border (also tested).
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from umt.errors import CheckpointError, InputError, UserError
from umt.modalities.windows import sample_windows
from umt.models.dac import DAC, DACConfig, normalise_state_dict_keys
from umt.utils.io import atomic_write_bytes, atomic_write_text
from umt.vocab import Vocabulary

TOKENIZER_FORMAT = "umt-audio-tokenizer/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FINGERPRINT_FILE = "fingerprint.txt"
SHIFT_SAMPLES: tuple[int, ...] = (0, -20, -15, -10, -5, 5, 10, 15, 20)
"""The 9 shift variants (variant 0 is the input itself): positive = delay (zeros in front)."""


# ----------------------------------------------------------------------------- codec files
def _safe_torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)``, allowing only numpy scalar / array reconstruction (which
    training metadata sometimes carries), never arbitrary classes."""
    allowed: list = []
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover
        from numpy.core import multiarray
    allowed += [multiarray.scalar, multiarray._reconstruct]
    # Files pickled under numpy 1.x name the same functions by their old module path.
    allowed += [(multiarray.scalar, "numpy.core.multiarray.scalar")]
    allowed += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]
    allowed += [np.ndarray, np.dtype, *{type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "u2", "b1")}]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_codec(path: str | Path) -> DAC:
    """A codec saved by ``descript-audio-codec``'s ``DAC.save(path, package=False)`` (a dict with
    ``"state_dict"`` and ``"metadata": {"kwargs": ...}``) as an eval-mode :class:`DAC`.

    Raises :class:`CheckpointError` naming the file for anything unreadable or mismatched.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such codec file", path)
    if _is_torch_package(path):
        raise CheckpointError(
            "a torch.package archive (DAC.save with package=True) holds pickled code and is not loaded; "
            "save the weights with DAC.save(path, package=False)",
            path,
        )
    try:
        saved = _safe_torch_load(path)
    except Exception as error:  # pickle / zip / weights-only refusals
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"not a loadable weights-only DAC checkpoint ({first_line})", path) from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise CheckpointError("not a DAC.save file: no 'state_dict' entry", path)
    kwargs = (saved.get("metadata") or {}).get("kwargs") if isinstance(saved.get("metadata"), dict) else None
    if not isinstance(kwargs, dict):
        raise CheckpointError("not a DAC.save file: no metadata['kwargs'] to build the model from", path)
    try:
        config = DACConfig.from_kwargs(kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"bad model kwargs: {error}", path) from None
    model = DAC(config)
    _load_state(model, normalise_state_dict_keys(saved["state_dict"]), path)
    return model.eval()


def _is_torch_package(path: Path) -> bool:
    """Whether ``path`` is a ``torch.package`` zip (it records its extern modules)."""

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith(".data/extern_modules") for name in archive.namelist())


def _load_state(model: DAC, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"weights do not match the model config ({detail})", path)
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"weights do not match the model config ({key}: {tuple(tensor.shape)} vs "
                f"{tuple(expected[key].shape)})",
                path,
            )
    model.load_state_dict(state_dict, strict=True)


# ----------------------------------------------------------------------------- audio I/O
MAX_AUDIO_SECONDS = 2 * 3600
"""The longest recording read, or made from MIDI, in one go: it is held in memory as mono float32
(1.3 GB for two hours at 44.1 kHz). Longer files are refused from their header, before reading."""

_READ_BLOCK_FRAMES = 1 << 20
"""Frames read at a time: a block of the file's channels is mixed to mono before the next is read,
so memory holds the mono signal and one block, not every channel of the whole file."""


def load_audio(
    path: str | Path, sample_rate: int = 44100, max_seconds: float = MAX_AUDIO_SECONDS
) -> torch.Tensor:
    """Any WAV / FLAC / OGG / MP3 file (libsndfile) to mono float32 ``[1, T]`` at ``sample_rate``.

    Raises :class:`InputError` naming the file when it is missing, unreadable, corrupt, empty, holds
    NaN or infinite samples, or lasts longer than ``max_seconds`` (judged from its header).
    """

    path = Path(path)
    if not path.is_file():
        raise InputError("no such audio file", path)
    if path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)", path)
    try:
        mono, file_rate = _read_mono(path, max_seconds)
    except InputError:
        raise
    except Exception as error:  # soundfile.LibsndfileError, RuntimeError, ...
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"unreadable or corrupt audio ({message})", path) from None
    if file_rate != sample_rate:
        mono = resample(mono, int(file_rate), sample_rate)
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)).reshape(1, -1)


def _read_mono(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    """The file's channels averaged, block by block, and its sample rate."""
    with soundfile.SoundFile(str(path)) as sound:
        rate, frames = int(sound.samplerate), int(sound.frames)
        if sound.channels == 0 or frames == 0:
            raise InputError("audio file holds no samples", path)
        if frames / rate > max_seconds:
            raise InputError(
                f"lasts {frames / rate / 3600:.1f} h; audio is read for at most "
                f"{max_seconds / 3600:g} h at a time (cut it into parts)",
                path,
            )
        mono = np.empty(frames, dtype=np.float32)
        filled = 0
        while True:
            block = sound.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            if not np.isfinite(block).all():
                raise InputError("audio holds NaN or infinite samples", path)
            if filled + len(block) > len(mono):  # a header that undercounts (some MP3s)
                mono = np.concatenate([mono, np.empty(len(block), dtype=np.float32)])
            mono[filled : filled + len(block)] = block.mean(axis=1)
            filled += len(block)
    if filled == 0:
        raise InputError("audio file holds no samples", path)
    return mono[:filled], rate


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) of a 1-D signal; for rates whose ratio
    reduces to large numbers (15248452 Hz to 44100 Hz: 3812113/11025), whose polyphase filter would
    take minutes, FFT resampling (``scipy.signal.resample``) instead."""
    from scipy.signal import resample as fft_resample
    from scipy.signal import resample_poly

    divisor = math.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    if max(up, down) > MAX_POLYPHASE_FACTOR:
        length = max(1, round(len(signal) * to_rate / from_rate))
        return fft_resample(signal, length).astype(np.float32)
    return resample_poly(signal, up, down).astype(np.float32)


MAX_POLYPHASE_FACTOR = 20_000
"""Up or down factors above this are resampled by FFT (the common rates reduce to a few hundred)."""


def shift_audio(audio: torch.Tensor, shift: int) -> torch.Tensor:
    """Shift ``[..., T]`` by ``shift`` samples keeping the length: positive delays (zeros in front),
    negative advances (zeros at the end)."""
    if shift == 0:
        return audio
    padded = torch.nn.functional.pad(audio, (max(shift, 0), max(-shift, 0)))
    return padded[..., max(-shift, 0) : max(-shift, 0) + audio.shape[-1]]


# ----------------------------------------------------------------------------- encoding
@torch.no_grad()
def encode_chunked(
    codec: DAC,
    audio: torch.Tensor,
    chunk_frames: int = 512,
    context_frames: int = 16,
    n_quantizers: int | None = None,
) -> torch.Tensor:
    """Audio ``[B, 1, T]`` to codes ``[B, K, ceil(T / hop)]`` encoded chunk by chunk.

    Chunk ``c`` keeps frames ``[c * chunk_frames, (c + 1) * chunk_frames)``, encoded from the audio of
    those frames plus up to ``context_frames`` frames either side (clipped at the file's ends, where
    the whole-file encoding sees the same edge). Memory stays bounded by the chunk size.
    """
    hop = codec.hop_length
    length = audio.shape[-1]
    total_frames = math.ceil(length / hop)
    if chunk_frames <= 0 or context_frames < 0:
        raise ValueError("chunk_frames must be positive and context_frames non-negative")
    if total_frames <= chunk_frames:
        return codec.encode(audio, n_quantizers)
    pieces = []
    for start in range(0, total_frames, chunk_frames):
        stop = min(start + chunk_frames, total_frames)
        window_start = max(0, start - context_frames)
        window_stop = min(total_frames, stop + context_frames)
        window = audio[..., window_start * hop : window_stop * hop]
        codes = codec.encode(window, n_quantizers)
        pieces.append(codes[..., start - window_start : stop - window_start])
    return torch.cat(pieces, dim=-1)


def fingerprint_of(config: dict, state_dict: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over the config (canonical JSON) and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class AudioTokenizer:
    """DAC codes as unified-vocabulary rows: ``tokenize(audio [1, T]) -> ids [ceil(T / 512), K]``.

    Uses the codec's first ``vocab.modality_codebooks("audio")`` codebooks (residual VQ allows a
    prefix), so a 9-codebook codec also serves the paper's 4-codebook vocabulary.
    """

    modality = "audio"

    def __init__(
        self, codec: DAC, chunk_frames: int = 512, context_frames: int = 16, loudness_db: float | None = None
    ) -> None:
        self.codec = codec.eval()
        self.chunk_frames = int(chunk_frames)
        self.context_frames = int(context_frames)
        self.loudness_db = None if loudness_db is None else float(loudness_db)
        """Normalise what is encoded to this many LUFS first (descript's ``compress``: -16), or not."""
        self._fingerprint: str | None = None

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def hop_length(self) -> int:
        return self.codec.hop_length

    def config_dict(self) -> dict:
        config = {
            "format": TOKENIZER_FORMAT,
            "codec": self.codec.config.to_dict(),
            "chunk_frames": self.chunk_frames,
            "context_frames": self.context_frames,
        }
        if self.loudness_db is not None:  # absent otherwise: earlier folders keep their fingerprint
            config["loudness_db"] = self.loudness_db
        return config

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(self.config_dict(), self.codec.state_dict())
        return self._fingerprint

    # ------------------------------------------------------------------ protocol
    def load(self, path: str | Path) -> torch.Tensor:
        """An audio file to mono ``[1, T]`` float32 at the codec's rate."""
        return load_audio(path, self.sample_rate)

    def windows(self, x: torch.Tensor, seconds: float, vocab: Vocabulary | None = None) -> list[torch.Tensor]:
        """``x [1, T]`` cut into ``seconds`` windows, exact sample slices (:mod:`umt.modalities.windows`; a
        last window shorter than one codec frame is left out unless it is the only one)."""
        bounds = sample_windows(x.shape[-1], self.sample_rate, seconds, min_samples=self.hop_length)
        return [x[..., start:stop] for start, stop in bounds]

    def variants(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 9 shift variants of ``x [1, T]`` (shifts :data:`SHIFT_SAMPLES`; variant 0 is ``x``)."""
        return [shift_audio(x, shift) for shift in SHIFT_SAMPLES]

    def encode(self, audio: torch.Tensor, codebooks: int | None = None) -> torch.Tensor:
        """Audio ``[1, T]`` or ``[B, 1, T]`` to codes ``[B, K, ceil(T / hop)]`` (chunked)."""
        if audio.dim() == 3:
            batch = audio
        elif audio.dim() == 2 and audio.shape[0] == 1:
            batch = audio[None]
        else:
            raise ValueError(f"audio must be mono [1, T] or [B, 1, T], got {tuple(audio.shape)}")
        if batch.shape[-1] == 0:
            raise ValueError("cannot tokenize empty audio")
        if self.loudness_db is not None:
            from umt.tokenizers.loudness import normalise_loudness

            items = [
                normalise_loudness(item[0].cpu().numpy(), self.sample_rate, self.loudness_db)
                for item in batch
            ]
            batch = torch.from_numpy(np.stack(items))[:, None].to(batch.device)
        return encode_chunked(self.codec, batch.float(), self.chunk_frames, self.context_frames, codebooks)

    def _codebooks(self, vocab: Vocabulary) -> int:
        wanted = vocab.modality_codebooks("audio")
        config = self.codec.config
        if wanted > config.n_codebooks:
            raise ValueError(f"vocabulary wants {wanted} audio codebooks, the codec has {config.n_codebooks}")
        if vocab.codebook_range("audio", 0).size < config.codebook_size:
            raise ValueError(
                f"vocabulary audio codebooks hold {vocab.codebook_range('audio', 0).size} codes, "
                f"the codec's hold {config.codebook_size}"
            )
        return wanted

    def tokenize(self, x: torch.Tensor, vocab: Vocabulary) -> np.ndarray:
        """Audio ``[1, T]`` to content rows ``[ceil(T / 512), K]`` (int64 unified ids)."""
        codes = self.encode(x, self._codebooks(vocab))[0]  # [K, F]
        return vocab.codes_to_ids("audio", codes.T.cpu().numpy())

    def detokenize(self, rows: np.ndarray, vocab: Vocabulary) -> torch.Tensor:
        """Content rows ``[F, K]`` back to audio ``[1, F * 512]``."""
        self._codebooks(vocab)
        codes = torch.from_numpy(vocab.ids_to_codes("audio", np.asarray(rows))).T[None]  # [1, K, F]
        return self.codec.decode(codes)[0]

    # ------------------------------------------------------------------ folders
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` + ``fingerprint.txt`` (each atomically; the
        config, written last, records the weights file's SHA-256).

        An existing folder is overwritten only when it is empty or a tokenizer folder (it has a
        ``config.json``); anything else is refused with :class:`UserError`, as the image tokenizer does.
        """

        directory = Path(directory)
        if directory.exists() and (
            not directory.is_dir() or (any(directory.iterdir()) and not (directory / CONFIG_FILE).is_file())
        ):
            raise UserError("exists and is not a tokenizer folder; refusing to overwrite it", directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.codec.state_dict().items()}
        payload = save_tensors(state, metadata={"format": TOKENIZER_FORMAT})
        atomic_write_bytes(directory / WEIGHTS_FILE, payload)
        atomic_write_text(directory / FINGERPRINT_FILE, self.fingerprint + "\n")
        config = {
            **self.config_dict(),
            "fingerprint": self.fingerprint,
            "weights_sha256": hashlib.sha256(payload).hexdigest(),
        }
        atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AudioTokenizer:
        """Restore a folder written by :meth:`save_pretrained`; :class:`CheckpointError` for a missing,
        corrupt or mismatched one."""

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for needed in (config_path, weights_path):
            if not needed.is_file():
                raise CheckpointError(f"not an audio tokenizer folder: {needed.name} is missing", directory)
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"corrupt config.json ({error})", config_path) from None
        if not isinstance(config, dict) or config.get("format") != TOKENIZER_FORMAT:
            found = config.get("format") if isinstance(config, dict) else None
            raise CheckpointError(f"format {found!r} is not {TOKENIZER_FORMAT!r}", config_path)
        payload = weights_path.read_bytes()
        if hashlib.sha256(payload).hexdigest() != config.get("weights_sha256"):
            raise CheckpointError("weights do not match the hash recorded in config.json", weights_path)
        try:
            codec_config = DACConfig.from_kwargs(config["codec"])
            state = load_tensors(payload)
        except Exception as error:
            raise CheckpointError(f"corrupt tokenizer folder ({error})", directory) from None
        codec = DAC(codec_config)
        _load_state(codec, state, weights_path)
        tokenizer = cls(
            codec,
            config.get("chunk_frames", 512),
            config.get("context_frames", 16),
            config.get("loudness_db"),
        )
        if tokenizer.fingerprint != config.get("fingerprint"):
            raise CheckpointError("fingerprint does not match config and weights", directory)
        fingerprint_path = directory / FINGERPRINT_FILE
        if fingerprint_path.is_file() and fingerprint_path.read_text().strip() != tokenizer.fingerprint:
            raise CheckpointError("fingerprint.txt does not match config.json", fingerprint_path)
        return tokenizer

    @classmethod
    def from_codec_file(cls, path: str | Path, **kwargs) -> AudioTokenizer:
        """Wrap a reference ``DAC.save`` ``.pth`` (see :func:`load_codec`)."""
        return cls(load_codec(path), **kwargs)
