"""Vocabulary layout 1 -> 2: the id map, and conversion of shards, model folders and checkpoints.

Layout 1 put every modality's SOS and EOS, then the image's SEP and height tokens, in front of all
content ranges, so a new modality moved every id. Layout 2 (:mod:`umt.vocab`) gives each modality
a block of its own. Both hold the same ranges with the same sizes, so converting is a permutation
of ids: token rows are mapped through it, and the translator's per-id weights (the token
embedding and the output head, and their optimizer moments in a training checkpoint) are reordered
by it. Nothing else in a model depends on id order.

Layout 1 is kept here as data (the ranges in their old order) so its hash can be recognised.
:func:`migrate` writes the converted copy to a new path and leaves the original as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from umt.errors import CheckpointError, InputError, UserError
from umt.modalities import PAPER_MODALITIES
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS
from umt.utils.io import atomic_path, atomic_write_text, staging_dir
from umt.vocab import VocabConfig, Vocabulary, vocabulary_from_dict

# Layout 1's names of ranges that layout 2 renamed; the rest kept their names.
_RENAMED = {"sep": "image/sep", "height": "image/height", "lmx": "lmx/token"}
# Per-id tensors of a Translator, by state-dict name: rows are ids.
PER_ID_WEIGHTS = ("token_embedding.weight", "head.weight", "head.bias")


def v1_ranges(config: VocabConfig) -> list[tuple[str, int]]:
    """Layout 1 as ``(layout-2 name, size)`` in layout-1 order (SOS and EOS one id each)."""
    if config.modalities != PAPER_MODALITIES:
        raise ValueError("layout 1 held exactly the paper's four modalities")
    v2 = Vocabulary(config)
    order = [("pad", 1)]
    order += [(f"{m}/sos", 1) for m in PAPER_MODALITIES] + [(f"{m}/eos", 1) for m in PAPER_MODALITIES]
    order += [("image/sep", 1), ("image/height", config.max_image_height)]
    specials = {name for name, _ in order}
    order += [(name, r.size) for name, r in v2.ranges.items() if name not in specials]
    return order


def v1_layout_hash(config: VocabConfig) -> str:
    """The hash layout 1 gave ``config`` (what layout-1 artifacts record)."""
    old_names = {new: old for old, new in _RENAMED.items()}
    # Layout 1 described its four SOS and four EOS ids as one range each.
    ranges = [["pad", 0, 1], ["sos", 1, 4], ["eos", 5, 4]]
    start = 9
    for name, size in v1_ranges(config)[9:]:
        ranges.append([old_names.get(name, name), start, size])
        start += size
    fields = {k: v for k, v in asdict(config).items() if k != "modalities"}
    described = {
        "layout_version": 1,
        "config": fields,
        "modalities": list(PAPER_MODALITIES),
        "ranges": ranges,
        "lmx_tokens": list(LMX_TOKENS),
    }
    canonical = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def v1_to_v2(config: VocabConfig) -> np.ndarray:
    """``new_id[old_id]``: where each layout-1 id is in layout 2 (a permutation of ``0..V-1``)."""
    v2 = Vocabulary(config)
    new_id = np.empty(v2.size, dtype=np.int64)
    start = 0
    for name, size in v1_ranges(config):
        new_id[start : start + size] = np.arange(v2[name].start, v2[name].stop)
        start += size
    return new_id


def _layout_1_config(stored_hash: str, config_values: dict | None, path: Path) -> VocabConfig:
    """The vocabulary config of an artifact, checked to be a layout-1 one."""
    config = VocabConfig(**dict(config_values or {}))
    if stored_hash == Vocabulary(config).layout_hash:
        raise UserError("already in vocabulary layout 2: nothing to convert", path)
    if stored_hash != v1_layout_hash(config):
        raise UserError(f"vocabulary hash {stored_hash} is not a layout-1 hash of its vocab config", path)
    return config


def migrate(source: str | Path, out: str | Path, vocab: dict | None = None) -> str:
    """Convert a layout-1 shard set, model folder or training checkpoint into ``out``.

    ``vocab``: the vocabulary config of a shard set (shards record only the hash; a model folder
    and a checkpoint carry theirs). Returns what was converted, for the user.
    """
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise UserError("--out must differ from the input (the original is kept)", out)
    if out.exists():
        raise UserError("already exists (give a new path)", out)
    if source.is_file():
        return _migrate_checkpoint(source, out)
    if (source / "config.json").is_file():
        return _migrate_model_folder(source, out)
    if source.is_dir() and any(source.glob("*.safetensors")):
        return _migrate_shards(source, out, vocab)
    raise InputError("not a shard set, a model folder or a training checkpoint", source)


def _migrate_shards(source: Path, out: Path, vocab: dict | None) -> str:
    from safetensors.numpy import save_file

    files = sorted(p for p in source.glob("*.safetensors") if not p.name.startswith("."))
    converted: dict[str, tuple[np.ndarray, str]] = {}  # stored hash -> (id map, new hash)
    with staging_dir(out) as staging:
        for path in files:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = dict(handle.metadata() or {})
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
            stored = metadata.get("vocab_hash", "")
            if stored not in converted:
                config = _layout_1_config(stored, vocab, path)
                converted[stored] = (v1_to_v2(config), Vocabulary(config).layout_hash)
            new_id, metadata["vocab_hash"] = converted[stored]
            tensors["rows"] = new_id[tensors["rows"]].astype(np.int32)
            save_file(tensors, str(staging / path.name), metadata=metadata)
        for extra in source.iterdir():  # manifests and notes beside the shards
            if extra.is_file() and extra.suffix != ".safetensors" and not extra.name.startswith("."):
                shutil.copy2(extra, staging / extra.name)
    return f"{len(files)} shard files"


def _row_order(new_id: np.ndarray) -> torch.Tensor:
    """Row ``j`` of a per-id table in layout 2 is row ``order[j]`` of the layout-1 table."""
    return torch.from_numpy(np.argsort(new_id))


def _permute_rows(state: dict, prefix: str, order: torch.Tensor) -> None:
    for name in PER_ID_WEIGHTS:
        key = prefix + name
        if key in state:
            state[key] = state[key][order].contiguous()


def _migrate_model_folder(source: Path, out: Path) -> str:
    from safetensors.torch import load_file, save_file

    try:
        config = json.loads((source / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"corrupt config.json ({error})", source / "config.json") from None
    if not str(config.get("format", "")).startswith("umt-translator/"):  # umt.pretrained's folders
        raise CheckpointError(f"unknown format {config.get('format')!r}", source / "config.json")
    vocab_config = _layout_1_config(config.get("vocab_hash", ""), config.get("vocab"), source)
    state = load_file(str(source / "model.safetensors"))
    _permute_rows(state, "", _row_order(v1_to_v2(vocab_config)))
    with staging_dir(out) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        save_file(state, str(staging / "model.safetensors"))
        config["vocab_hash"] = vocabulary_from_dict(config.get("vocab")).layout_hash
        atomic_write_text(staging / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return "a model folder"


def _migrate_checkpoint(source: Path, out: Path) -> str:
    try:
        ckpt = torch.load(str(source), map_location="cpu", weights_only=True)
        hparams = ckpt["hyper_parameters"]
    except Exception as error:  # torch raises many kinds for a corrupt or hostile file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"not a readable training checkpoint ({first})", source) from None
    config = _layout_1_config(ckpt.get("umt_vocab_hash", ""), hparams.get("vocab"), source)
    order = _row_order(v1_to_v2(config))
    state = ckpt["state_dict"]
    shapes = {tuple(state[f"translator.{n}"].shape) for n in PER_ID_WEIGHTS if f"translator.{n}" in state}
    others = {tuple(v.shape) for k, v in state.items() if k.removeprefix("translator.") not in PER_ID_WEIGHTS}
    if shapes & others:
        raise CheckpointError("a non-vocabulary weight has the shape of a per-id one: cannot convert", source)
    _permute_rows(state, "translator.", order)
    # Adam's moments have their parameter's shape; only per-id parameters have these shapes.
    for optimizer in ckpt.get("optimizer_states", []):
        for moments in optimizer.get("state", {}).values():
            for name, value in moments.items():
                if torch.is_tensor(value) and tuple(value.shape) in shapes:
                    moments[name] = value[order].contiguous()
    ckpt["umt_vocab_hash"] = Vocabulary(config).layout_hash
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(ckpt, str(tmp))
    return "a training checkpoint"


def migration_hint(stored_hash: str, vocab_values: dict | None = None) -> str:
    """A pointer to ``umt migrate`` when ``stored_hash`` is layout 1's hash of the config, else ``""``."""
    try:
        config = VocabConfig(**dict(vocab_values or {}))
        is_layout_1 = config.modalities == PAPER_MODALITIES and stored_hash == v1_layout_hash(config)
    except (TypeError, ValueError):
        return ""
    if not is_layout_1:
        return ""
    return " (it was made with vocabulary layout 1: convert it with `umt migrate PATH --out NEW`)"
