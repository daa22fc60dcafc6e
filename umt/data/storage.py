"""Shard sets from local disk or object storage (fsspec URLs), cached locally.

A plain path or a ``file://`` URL is read in place. Any other URL (``s3://``, ``gs://``,
``memory://``, ...) is resolved through fsspec (installed with ``lightning``): its
``*.safetensors`` files are copied once into ``cache_dir/<hash of the URL>/`` (each file written
atomically, so a killed copy is redone, never half-used) and read from there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from umt.errors import InputError
from umt.utils.io import atomic_path


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def local_shard_dir(url: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local directory holding the shard files at ``url`` (downloading them if remote)."""
    url = str(url)
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if not is_remote(url):
        return Path(url)
    try:
        import fsspec
    except ImportError:  # pragma: no cover - lightning depends on fsspec
        raise InputError("reading shards from a URL needs fsspec (pip install fsspec)", url) from None
    if cache_dir is None:
        cache_dir = Path(os.environ.get("UMT_CACHE", Path.home() / ".cache" / "umt")) / "shards"
    target = Path(cache_dir) / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    fs, root = fsspec.core.url_to_fs(url)
    try:
        remote_files = sorted(p for p in fs.ls(root, detail=False) if str(p).endswith(".safetensors"))
    except FileNotFoundError:
        raise InputError("no such shard directory", url) from None
    if not remote_files:
        raise InputError("no *.safetensors shards there", url)
    target.mkdir(parents=True, exist_ok=True)
    for remote in remote_files:
        local = target / Path(str(remote)).name
        size = fs.size(remote)
        if local.exists() and local.stat().st_size == size:
            continue  # cached by an earlier run
        with atomic_path(local) as tmp:
            fs.get_file(remote, str(tmp))
    return target
