"""Open any tokenizer folder by what its ``config.json`` says, and check that it fits a vocabulary.

Image folders (``umt-image-tokenizer/1``) and audio folders (``umt-audio-tokenizer/1``) each have
their own ``from_pretrained``; :func:`load_tokenizer` dispatches on the format tag so callers (the
``umt tokenizer`` and ``umt export`` commands) need not know which one a folder holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from umt.errors import CheckpointError
from umt.tokenizers import registry
from umt.vocab import Vocabulary

IMAGE_FORMAT = "umt-image-tokenizer/1"
AUDIO_FORMAT = "umt-audio-tokenizer/1"
FORMAT_MODALITY = {IMAGE_FORMAT: "image", AUDIO_FORMAT: "audio"}


def folder_modality(directory: str | Path) -> str:
    """``"image"`` or ``"audio"`` from the folder's ``config.json``; :class:`CheckpointError` otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError("not a tokenizer folder (no such directory)", directory)
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("not a tokenizer folder (no config.json)", directory) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"corrupt config.json ({error})", config_path) from None
    found = config.get("format") if isinstance(config, dict) else None
    if found not in FORMAT_MODALITY:
        raise CheckpointError(
            f"format {found!r} is not a tokenizer format ({', '.join(FORMAT_MODALITY)})", config_path
        )
    return FORMAT_MODALITY[found]


def load_tokenizer(directory: str | Path) -> Any:
    """The :class:`~umt.tokenizers.image.ImageTokenizer` or :class:`~umt.tokenizers.audio.AudioTokenizer`
    of a folder, verified (weights hash and fingerprint); :class:`CheckpointError` for a bad folder.

    The class comes from the modality registry (:mod:`umt.tokenizers.registry`), as for baking.
    """

    return registry.load_tokenizer(folder_modality(directory), directory)


def codebook_layout(tokenizer: Any) -> tuple[int, int]:
    """``(codebooks, codes per codebook)`` that the tokenizer produces."""
    if tokenizer.modality == "image":
        return tokenizer.config.num_codebooks, tokenizer.config.n_embed
    return tokenizer.codec.config.n_codebooks, tokenizer.codec.config.codebook_size


def fit_problem(tokenizer: Any, vocab: Vocabulary) -> str | None:
    """Why ``tokenizer``'s codes do not fit ``vocab`` (one line), or ``None`` when they fit.

    An image tokenizer must match the vocabulary's image codebooks exactly (the code grid is stored
    whole); an audio codec may have more codebooks than the vocabulary uses (residual VQ: a prefix
    is a coarser code), but each must fit in the vocabulary's codebook range.
    """
    modality = tokenizer.modality
    codebooks, size = codebook_layout(tokenizer)
    wanted = vocab.modality_codebooks(modality)
    room = vocab.codebook_range(modality, 0).size
    if modality == "image" and (codebooks != wanted or size != room):
        return (
            f"image tokenizer makes {codebooks} x {size} codes; the model's vocabulary has {wanted} x {room}"
        )
    if modality == "audio" and (codebooks < wanted or size > room):
        return (
            f"audio tokenizer makes {codebooks} x {size} codes; the model's vocabulary needs "
            f">= {wanted} codebooks of <= {room} codes"
        )
    return None


def fitting_tokenizers(directories: list[str], vocab: Vocabulary) -> tuple[dict[str, str], dict[str, Path]]:
    """The tokenizer folders given for a model folder, checked: at most one per modality, each
    fitting ``vocab``. Returns their fingerprints and folders by modality; a problem is one
    :class:`~umt.errors.UserError` naming the folder."""
    from umt.errors import UserError

    fingerprints: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for directory in directories:
        tokenizer = load_tokenizer(directory)
        modality = tokenizer.modality
        if modality in folders:
            raise UserError(f"two {modality} tokenizers given ({folders[modality]} and {directory})")
        problem = fit_problem(tokenizer, vocab)
        if problem is not None:
            raise UserError(problem, directory)
        fingerprints[modality], folders[modality] = tokenizer.fingerprint, Path(directory)
    return fingerprints, folders


def summary(tokenizer: Any) -> dict[str, Any]:
    """A few facts about a tokenizer, for ``umt tokenizer info``."""
    codebooks, size = codebook_layout(tokenizer)
    facts: dict[str, Any] = {
        "modality": tokenizer.modality,
        "fingerprint": tokenizer.fingerprint,
        "codebooks": codebooks,
        "codebook_size": size,
    }
    if tokenizer.modality == "image":
        config = tokenizer.config
        model = tokenizer.model
        facts.update(
            downsampling=config.downsampling,
            latent_dim=config.embed_dim,
            channels=config.ch,
            channel_multipliers=list(config.ch_mult),
            target_staff_height=tokenizer.preprocess_config.target_staff_height,
        )
    else:
        model = tokenizer.codec
        facts.update(
            sample_rate=tokenizer.sample_rate,
            hop_length=tokenizer.hop_length,
            frames_per_second=round(tokenizer.sample_rate / tokenizer.hop_length, 2),
            chunk_frames=tokenizer.chunk_frames,
            context_frames=tokenizer.context_frames,
            loudness_db="none" if tokenizer.loudness_db is None else tokenizer.loudness_db,
        )
    facts["parameters"] = sum(p.numel() for p in model.parameters())
    return facts
