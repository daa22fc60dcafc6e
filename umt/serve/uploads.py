"""What an upload is, judged by its bytes and never by its name, and the kinds each tab takes."""

from __future__ import annotations

KINDS = ("image", "pdf", "audio", "midi", "musicxml")

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image"),
    (b"\xff\xd8\xff", 0, "image"),
    (b"GIF8", 0, "image"),
    (b"BM", 0, "image"),
    (b"II*\x00", 0, "image"),
    (b"MM\x00*", 0, "image"),
    (b"%PDF-", 0, "pdf"),
    (b"fLaC", 0, "audio"),
    (b"ID3", 0, "audio"),
    (b"OggS", 0, "audio"),
    (b"MThd", 0, "midi"),
)

SUFFIX = {"image": ".png", "pdf": ".pdf", "audio": ".wav", "midi": ".mid", "musicxml": ".musicxml"}
"""A safe name's suffix for a stored upload of each kind (the image suffix is fixed by
:func:`image_suffix`)."""


def sniff(data: bytes) -> str | None:
    """The kind of an upload from its first bytes (``None``: none this server reads)."""
    for magic, offset, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image"
    if len(data) > 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame (MP3)
        return "audio"
    if data[:2] == b"PK":  # a compressed MusicXML (.mxl) is a zip archive
        return "musicxml"
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<?xml") or head.startswith(b"<!doctype score-") or head.startswith(b"<score-"):
        return "musicxml" if b"score-partwise" in data[:8192] or b"score-timewise" in data[:8192] else None
    return None


def image_suffix(data: bytes) -> str:
    """The file suffix matching an image's bytes (the readers go by suffix)."""
    for magic, suffix in (
        (b"\x89PNG", ".png"),
        (b"\xff\xd8\xff", ".jpg"),
        (b"GIF8", ".gif"),
        (b"BM", ".bmp"),
        (b"II*\x00", ".tif"),
        (b"MM\x00*", ".tif"),
    ):
        if data.startswith(magic):
            return suffix
    return ".webp"


def audio_suffix(data: bytes) -> str:
    if data.startswith(b"fLaC"):
        return ".flac"
    if data.startswith(b"OggS"):
        return ".ogg"
    if data.startswith(b"RIFF"):
        return ".wav"
    return ".mp3"


def stored_suffix(kind: str, data: bytes) -> str:
    """The suffix an upload of ``kind`` is stored under."""
    if kind == "image":
        return image_suffix(data)
    if kind == "audio":
        return audio_suffix(data)
    if kind == "musicxml":
        return ".mxl" if data[:2] == b"PK" else ".musicxml"
    return SUFFIX[kind]
