"""A U-MusT run folder read safely: its configuration, its latest checkpoint, and its id layout.

U-MusT's trainer (MALerLab/U-MusT, ``train_multimodal.py``) writes ``RUN/files/config.yaml``
(wandb style: every top-level key is ``{desc, value}``) and ``RUN/files/checkpoints/iter{N}_loss{L}.pt``
holding ``iter``, ``model_state_dict``, ``optimizer_state_dict``, ``scheduler_state_dict`` and
``loss``; their loader takes the largest ``N`` and skips ``last_checkpoint.pt``. The checkpoint is
read with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.

:class:`UMustIds` restates the facts of their id layout (``umust/vocab_utils.py``
``TokenIdxHandler``) that the import needs: one flat id space per side (encoder input, decoder
output), 0 a universal pad, then each modality's block in the order of ``in_modal_type`` /
``out_modal_type``: LMX (their vocabulary file), YourMT3's MIDI events (PAD, EOS, UNK, shift
``0..midi_max_shift``, pitch 128, velocity 2, tie, program 128, drum 128), image codes (``K`` x
(``codebook_size`` + pad + SOS/EOS)) and audio codes (``K`` x (``codebook_size`` + one special));
the crop separator is the last id and, on an output side with height tokens, the ``H`` height
tokens come just before it.
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umt.errors import CheckpointError, UserError
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

CHECKPOINT_NAME = re.compile(r"iter(\d+)_loss([^/]*)\.pt")
MODALITY_OF = {"pt": "image", "dac": "audio", "lmx": "lmx", "midi": "midi"}
"""U-MusT's modality keys -> UMT's."""

NOT_IN_THEIR_LMX = frozenset(
    {
        "beats:11",
        "beats:13",
        "beats:14",
        "beats:16",
        "clef:G3",
        "clef:G4",
        "clef:G5",
        "clef:C2",
        "clef:C3",
        "clef:C4",
        "clef:C5",
        "clef:F1",
        "clef:F2",
        "clef:F5",
        "C0",
        "D0",
        "E0",
        "C8",
        "D8",
        "E8",
        "F8",
        "G8",
        "A8",
        "B8",
        "C9",
        "D9",
        "E9",
        "F9",
        "G9",
        "A9",
        "B9",
        "voice:9",
        "voice:10",
        "voice:11",
        "voice:12",
        "maxima",
        "8in2",
        "9in2",
        "staff:3",
        "tremolo:unmeasured",
    }
)
"""UMT's LMX tokens that U-MusT's ``vocab/lmx_vocab_singletoken.txt`` lacks. That file (the
paper's runs) is ``<pad>`` followed by the rest of UMT's tokens in sorted order."""

KNOWN_NN_KEYS = {
    "": {
        "type",
        "model_name",
        "model_dim",
        "dropout_shared",
        "use_vq_emb",
        "use_dac_emb",
        "pretrained",
        "compile",
        "encoder_params",
        "decoder_params",
    },
    "encoder_params": {"name", "num_layer", "num_head", "dropout"},
    "decoder_params": {"decoder", "sub_decoder", "tf_dropout"},
    "decoder_params.decoder": {"num_layer", "num_head", "dropout"},
    "decoder_params.sub_decoder": {
        "name",
        "decout_window_size",
        "num_layer",
        "num_head",
        "feature_enricher_use",
    },
}
"""The model settings of the published U-MusT; another key means a version this importer does not know."""


def their_lmx_tokens(vocab_file: str | Path | None = None) -> list[str]:
    """U-MusT's LMX vocabulary, specials included: the paper's file, or ``vocab_file`` (one token a line)."""
    if vocab_file is None:
        return ["<pad>", *sorted(t for t in LMX_TOKENS if t not in NOT_IN_THEIR_LMX)]
    try:
        tokens = [line for line in Path(vocab_file).read_text(encoding="utf-8").split("\n") if line]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the LMX vocabulary ({error})", vocab_file) from None
    if len(tokens) != len(set(tokens)):
        raise UserError("the LMX vocabulary repeats a token", vocab_file)
    return tokens


@dataclass(frozen=True)
class Block:
    """One modality's ids on one side: ``start`` and, for code modalities, the per-codebook layout."""

    key: str
    start: int
    size: int
    codebook_block: int = 0
    """Ids per codebook (codes + specials) for image/audio; 0 for single-stream modalities."""
    sos: int = 0
    eos: int = 0
    """Local ids (within a codebook block for image/audio)."""


@dataclass
class UMustIds:
    """One side's id layout (their ``TokenIdxHandler``): blocks, separator, height tokens, positions."""

    blocks: dict[str, Block]
    size: int
    sep: int | None
    heights: list[int]
    pos_shift: dict[str, int | tuple[int, int]]
    pos_size: int
    lmx_tokens: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, keys: list[str], data: dict[str, Any], lmx_tokens: list[str], heights: bool) -> UMustIds:
        codebook, n_special = int(data["codebook_size"]), int(data["num_special_tokens"])
        books, height = (
            int(data["n_codebook"]),
            int(data["image_height"]) // int(data["image_compress_factor"]),
        )
        blocks, start = {}, 1
        for key in keys:
            if key in ("pt", "dac"):
                specials = n_special + 1 if key == "pt" else n_special
                sos, eos = _rvq_special_ids(codebook, specials)
                block = Block(key, start, books * (codebook + specials), codebook + specials, sos, eos)
            elif key == "lmx":
                sos, eos = _lmx_special_ids(lmx_tokens, n_special)
                block = Block(key, start, len(lmx_tokens), 0, sos, eos)
            elif key == "midi":
                block = Block(key, start, 3 + int(data["midi_max_shift"]) + 1 + 387, 0, 1, 1)
            else:
                raise CheckpointError(f"unknown U-MusT modality {key!r}")
            blocks[key] = block
            start += block.size
        # their size: + 3 ids (the pad, the separator and one more: unused, or the first height token),
        # + H - 1 with height tokens, where H is 0
        # on a side without images (so such a side has one id fewer)
        size = start + 2 + ((height if "pt" in keys else 0) - 1 if heights else 0)
        sep = size - 1 if "pt" in keys else None
        height_ids = [size - 2 - i for i in reversed(range(height))] if heights and "pt" in keys else []
        shifts: dict[str, int | tuple[int, int]] = {}
        position = 1
        for key in keys:
            if key == "pt":
                shifts[key] = (position, position + int(data["max_pt_x_len"]))
                position += int(data["max_pt_x_len"]) + height
            else:
                shifts[key] = position
                position += int(data["max_seq_len"][key])
        return cls(blocks, size, sep, height_ids, shifts, position, lmx_tokens if "lmx" in keys else [])


def _rvq_special_ids(codebook: int, specials: int) -> tuple[int, int]:
    """(SOS, EOS) local ids of a code modality with ``specials`` specials per codebook."""
    if specials == 1:
        return codebook, codebook
    if specials == 2:
        return codebook + 1, codebook + 1
    return codebook + 1, codebook + 2


def _lmx_special_ids(tokens: list[str], n_special: int) -> tuple[int, int]:
    names = {1: ("<pad>", "<pad>"), 2: ("<start>", "<start>"), 3: ("<start>", "<end>")}[n_special]
    try:
        return tokens.index(names[0]), tokens.index(names[1])
    except ValueError:
        raise CheckpointError(
            f"the LMX vocabulary lacks {names} for num_special_tokens={n_special}"
        ) from None


@dataclass
class UMustRun:
    """What the import reads from a run folder."""

    directory: Path
    config: dict[str, Any]
    checkpoint: Path
    iteration: int
    state: dict[str, Any]

    @property
    def nn(self) -> dict[str, Any]:
        return self.config["nn_params"]

    @property
    def data(self) -> dict[str, Any]:
        return self.config["data"]


def read_run(run_dir: str | Path) -> UMustRun:
    """The configuration and latest checkpoint of a U-MusT run folder (module docstring)."""
    run_dir = Path(run_dir)
    files = run_dir / "files"
    if not files.is_dir():
        raise UserError("not a U-MusT run folder (no files/ inside; give the run-... folder)", run_dir)
    config = read_config(files / "config.yaml")
    checkpoint, iteration = latest_checkpoint(files / "checkpoints")
    state = load_checkpoint(checkpoint)
    return UMustRun(run_dir, config, checkpoint, iteration, state)


def read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("no files/config.yaml in the run folder", path.parent.parent) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UserError(f"not a readable YAML config ({str(error).splitlines()[0]})", path) from None
    if not isinstance(raw, dict):
        raise UserError("not a U-MusT config (expected a mapping)", path)
    config = {
        key: value["value"] if isinstance(value, dict) and "value" in value else value
        for key, value in raw.items()
        if key not in ("wandb_version", "_wandb")
    }
    for section in ("nn_params", "data"):
        if not isinstance(config.get(section), dict):
            raise UserError(f"not a U-MusT config (no {section!r} section)", path)
    _check_known_keys(config["nn_params"], path)
    if config["nn_params"].get("model_name") != "MultimodalTranslator":
        name = config["nn_params"].get("model_name")
        raise UserError(f"model {name!r} is not U-MusT's MultimodalTranslator (the only one imported)", path)
    return config


def _check_known_keys(nn: dict[str, Any], path: Path) -> None:
    for prefix, known in KNOWN_NN_KEYS.items():
        section: Any = nn
        for part in filter(None, prefix.split(".")):
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict):
            raise UserError(f"not a U-MusT config (nn_params.{prefix} is missing)", path)
        unknown = sorted(set(section) - known)
        if unknown:
            where = f"nn_params.{prefix}." if prefix else "nn_params."
            raise UserError(
                f"unknown model setting {where}{unknown[0]} (a U-MusT version this importer does not know)",
                path,
            )


def latest_checkpoint(folder: Path) -> tuple[Path, int]:
    """``iter{N}_loss{L}.pt`` with the largest ``N`` (``last_checkpoint.pt`` is not a candidate)."""
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = CHECKPOINT_NAME.fullmatch(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
    if not found:
        raise UserError("no iter{N}_loss{L}.pt checkpoint in files/checkpoints", folder)
    iteration, path = max(found)
    return path, iteration


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's model weights (prefixes of DDP and ``torch.compile`` removed)."""
    import torch

    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a hostile file
            warnings.simplefilter("ignore")
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError("holds more than tensors (refusing to unpickle code)", path) from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(f"not a readable checkpoint ({str(error).splitlines()[0]})", path) from None
    weights = checkpoint.get("model_state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError("no model_state_dict in the checkpoint", path)
    state = {}
    for key, value in weights.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        state[key.replace("._orig_mod.", ".")] = value
    return state
