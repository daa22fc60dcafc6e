"""Exported model folders: ``config.json`` + ``model.safetensors``, loadable without Hydra.

``config.json`` holds the format tag, the Translator config, the vocabulary config and its layout
hash, the task list and the tokenizer fingerprints by modality (the ``tokenizer_hash`` of the
shards the model was trained on, which the training checkpoint records); tokenizer folders given at
export are copied under ``tokenizers/<modality>/``, and one whose fingerprint differs from the one
the model was trained with is refused. :func:`from_pretrained` refuses a folder whose vocabulary or tokenizers
do not match what the caller uses, with a :class:`~umt.errors.CheckpointError`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from umt.errors import CheckpointError
from umt.modalities.windows import WINDOW_SECONDS
from umt.models.translator import Translator, TranslatorConfig
from umt.utils.io import atomic_path, atomic_write_text
from umt.vocab import Vocabulary, vocabulary_from_dict

EXPORT_FORMAT = "umt-translator/1"


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    tokenizer_hashes: Mapping[str, str] | None = None,
    tokenizer_dirs: Mapping[str, str | Path] | None = None,
) -> Path:
    """A Lightning ``.ckpt`` of :class:`~umt.training.translation.TranslationModule` to a folder.

    ``tokenizer_hashes``: fingerprints of the tokenizers to record, by modality (for a folder in
    ``tokenizer_dirs`` without one, the folder's own fingerprint is read when the checkpoint
    records one to compare with). A fingerprint that differs from the one the checkpoint was
    trained with (``umt_tokenizer_hashes``) raises :class:`CheckpointError` before anything is
    written; the trained fingerprints are recorded for every modality that has one.
    """

    try:
        ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        hparams = ckpt["hyper_parameters"]
    except (OSError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"not a readable training checkpoint ({error})", checkpoint) from None
    vocab = vocabulary_from_dict(hparams.get("vocab"))
    stored = ckpt.get("umt_vocab_hash")
    if stored is not None and stored != vocab.layout_hash:
        from umt.migrate import migration_hint

        raise CheckpointError(
            f"checkpoint vocabulary hash {stored} does not match its vocab config ({vocab.layout_hash})"
            + migration_hint(stored, hparams.get("vocab")),
            checkpoint,
        )
    trained = dict(ckpt.get("umt_tokenizer_hashes") or {})
    fingerprints = dict(tokenizer_hashes or {})
    for modality, folder in (tokenizer_dirs or {}).items():
        if modality not in fingerprints and modality in trained:
            from umt.tokenizers.folders import load_tokenizer

            fingerprints[modality] = load_tokenizer(folder).fingerprint
    for modality, fingerprint in sorted(fingerprints.items()):
        if trained.get(modality, fingerprint) != fingerprint:
            raise CheckpointError(
                f"the model was trained with {modality} tokenizer {trained[modality]}, "
                f"not {fingerprint} (give the tokenizer its shards were baked with)",
                checkpoint,
            )
    fingerprints = {**trained, **fingerprints}
    state = {k.removeprefix("translator."): v for k, v in ckpt["state_dict"].items()}
    return write_model_folder(
        out_dir,
        state,
        {
            "model": dict(hparams["model"]),
            "vocab": dict(hparams.get("vocab") or {}),
            "vocab_hash": vocab.layout_hash,
            "tasks": list(hparams.get("tasks") or []),
            "global_step": int(ckpt.get("global_step", 0)),
            "window_seconds": float(hparams.get("window_seconds", WINDOW_SECONDS)),
        },
        tokenizer_dirs,
        fingerprints,
    )


def save_translator(
    model: Translator,
    out_dir: str | Path,
    tasks: list[str],
    tokenizer_dirs: Mapping[str, str | Path] | None = None,
    fingerprints: Mapping[str, str] | None = None,
    window_seconds: float = WINDOW_SECONDS,
    provenance: Mapping[str, object] | None = None,
) -> Path:
    """A :class:`Translator` built in memory (an import, say) as a model folder; ``provenance`` goes
    into ``config.json`` as ``imported_from``."""
    fields = {
        "model": model.config.to_dict(),
        "vocab": model.vocab.describe()["config"],
        "vocab_hash": model.vocab.layout_hash,
        "tasks": list(tasks),
        "global_step": 0,
        "window_seconds": float(window_seconds),
    }
    if provenance:
        fields["imported_from"] = dict(provenance)
    return write_model_folder(out_dir, model.state_dict(), fields, tokenizer_dirs, dict(fingerprints or {}))


def write_model_folder(
    out_dir: str | Path,
    state: Mapping[str, torch.Tensor],
    fields: Mapping[str, object],
    tokenizer_dirs: Mapping[str, str | Path] | None,
    fingerprints: Mapping[str, str],
) -> Path:
    """``model.safetensors``, copies of the tokenizer folders and ``config.json`` (``fields`` plus the
    format tag and the tokenizers) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({name: value.contiguous() for name, value in state.items()}, str(tmp))
    tokenizers: dict[str, dict[str, str]] = {}
    for modality, folder in (tokenizer_dirs or {}).items():
        target = out / "tokenizers" / modality
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)
        tokenizers[modality] = {"path": f"tokenizers/{modality}"}
    for modality, fingerprint in fingerprints.items():
        tokenizers.setdefault(modality, {})["fingerprint"] = fingerprint
    config = {"format": EXPORT_FORMAT, **fields, "tokenizers": tokenizers}
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return out


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError("no config.json (not an exported model folder)", directory) from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"corrupt config.json ({error})", path) from None
    if config.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"unknown format {config.get('format')!r} (expected {EXPORT_FORMAT})", path)
    try:
        vocab = vocabulary_from_dict(config["vocab"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"bad vocabulary settings ({error})", path) from None
    if vocab.layout_hash != config.get("vocab_hash"):
        from umt.migrate import migration_hint

        raise CheckpointError(
            f"vocabulary hash {config['vocab_hash']} disagrees with its vocab config ({vocab.layout_hash})"
            + migration_hint(config["vocab_hash"], config["vocab"]),
            path,
        )
    return config


def load_state_dict_checked(directory: str | Path, vocab: Vocabulary | None = None) -> dict:
    """The weights of an exported folder, refusing it if its vocabulary differs from ``vocab``."""

    config = read_config(directory)
    if vocab is not None and vocab.layout_hash != config["vocab_hash"]:
        raise CheckpointError(
            f"model vocabulary {config['vocab_hash']} does not match the one in use ({vocab.layout_hash})",
            directory,
        )
    try:
        return load_file(str(Path(directory) / "model.safetensors"))
    except Exception as error:  # safetensors raises several types for a missing/corrupt file
        raise CheckpointError(f"unreadable model.safetensors ({error})", directory) from None


def from_pretrained(
    directory: str | Path,
    vocab: Vocabulary | None = None,
    tokenizer_fingerprints: Mapping[str, str] | None = None,
):
    """The Translator of an exported folder (eval mode). Refuses a vocabulary or tokenizer mismatch."""

    config = read_config(directory)
    for modality, fingerprint in (tokenizer_fingerprints or {}).items():
        stored = config["tokenizers"].get(modality, {}).get("fingerprint")
        if stored is not None and stored != fingerprint:
            raise CheckpointError(
                f"model was trained with {modality} tokenizer {stored}, the one in use is {fingerprint}",
                directory,
            )
    state = load_state_dict_checked(directory, vocab)
    try:
        model = Translator(TranslatorConfig(**config["model"]), vocabulary_from_dict(config["vocab"]))
    except (TypeError, ValueError) as error:  # an unknown or impossible setting
        raise CheckpointError(f"config.json: bad model settings ({error})", directory) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})", directory
        )
    return model.eval()
