"""Safe XML and MusicXML reading: no entity expansion, no external entities, bounded archives.

Every problem with the input raises :class:`umt.errors.InputError` naming the file and the problem.

* XML is parsed with lxml with ``resolve_entities=False``, ``no_network=True`` and ``load_dtd=False``;
  a document that declares entities (``<!ENTITY``: billion laughs, XXE) is refused outright.
* ``.mxl`` archives are checked before anything is decompressed: member count, declared uncompressed
  sizes, no absolute or ``..`` member names; the MusicXML member is the first ``rootfile`` that
  ``META-INF/container.xml`` names (else the first ``.xml``/``.musicxml`` member outside ``META-INF``).
  Members are read with a hard byte limit, so a lying size header cannot inflate past it.

Example::

    root = read_musicxml("score.mxl")      # lxml root element of the MusicXML document
"""

from __future__ import annotations

import io
import posixpath
import threading
import zipfile
from pathlib import Path
from typing import Any

from umt.errors import InputError

# Limits; generous for real scores (the largest music21 corpus file is a few MB uncompressed).
MAX_XML_BYTES = 256 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 1000
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_ARCHIVE_TOTAL_BYTES = 512 * 1024 * 1024

_ZIP_MAGIC = b"PK\x03\x04"
_PARSERS = threading.local()  # lxml parsers are not thread-safe: one per thread


def _parser(keep_comments: bool) -> Any:
    from lxml import etree

    attr = "with_comments" if keep_comments else "without_comments"
    parser = getattr(_PARSERS, attr, None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=not keep_comments,
            remove_pis=not keep_comments,
        )
        setattr(_PARSERS, attr, parser)
    return parser


def parse_xml_bytes(data: bytes | str, name: str | Path = "<string>", keep_comments: bool = False) -> Any:
    """Parse an XML document safely and return its root element (an ``lxml.etree._Element``).

    ``name`` is used in error messages. Comments and processing instructions are dropped unless
    ``keep_comments`` (the LMX linearizer relies on them being gone, like ``xml.etree`` does).
    """
    from lxml import etree

    if isinstance(data, str):
        # lxml refuses str with an encoding declaration; the bytes path handles both.
        data = data.encode("utf-8") if not data.lstrip().startswith("<?xml") else _reencode_str(data)
    if not data or not data.strip():
        raise InputError("empty file", name)
    if len(data) > MAX_XML_BYTES:
        raise InputError(f"XML document larger than {MAX_XML_BYTES} bytes", name)
    # Refuse entity declarations before the parser sees them (UTF-8/ASCII documents); the check on
    # the parsed DTD below covers other encodings.
    if b"<!ENTITY" in data:
        raise InputError("XML document declares entities (refused: entity expansion is unsafe)", name)
    try:
        root = etree.fromstring(data, parser=_parser(keep_comments))
    except etree.XMLSyntaxError as error:
        raise InputError(f"not well-formed XML: {error}", name) from None
    except ValueError as error:  # e.g. unsupported encoding declarations
        raise InputError(f"cannot parse XML: {error}", name) from None
    if root is None:
        raise InputError("no XML root element", name)
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise InputError("XML document declares entities (refused: entity expansion is unsafe)", name)
    return root


def _reencode_str(text: str) -> bytes:
    # Drop the XML declaration (its encoding= no longer describes a Python str) and encode as UTF-8.
    end = text.find("?>")
    return text[end + 2 :].encode("utf-8") if end >= 0 else text.encode("utf-8")


def _check_member_name(name: str, path: str | Path) -> None:
    normalized = posixpath.normpath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or normalized.startswith(".."):
        raise InputError(f"archive member {name!r} has an unsafe path", path)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str | Path) -> bytes:
    if info.file_size > MAX_MEMBER_BYTES:
        raise InputError(f"archive member {info.filename!r} is too large ({info.file_size} bytes)", path)
    try:
        with archive.open(info) as handle:
            data = handle.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        raise InputError(f"cannot read archive member {info.filename!r}: {error}", path) from None
    if len(data) > MAX_MEMBER_BYTES:
        raise InputError(f"archive member {info.filename!r} inflates past {MAX_MEMBER_BYTES} bytes", path)
    return data


def read_mxl_bytes(data: bytes, path: str | Path = "<bytes>") -> bytes:
    """The MusicXML document inside a compressed ``.mxl`` archive, as bytes (see module docstring)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise InputError(f"not a valid MXL (zip) archive: {error}", path) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise InputError(f"archive has too many members ({len(infos)} > {MAX_ARCHIVE_MEMBERS})", path)
        total = 0
        for info in infos:
            _check_member_name(info.filename, path)
            total += info.file_size
        if total > MAX_ARCHIVE_TOTAL_BYTES:
            raise InputError(f"archive inflates to {total} bytes (limit {MAX_ARCHIVE_TOTAL_BYTES})", path)
        by_name = {info.filename: info for info in infos}
        target: zipfile.ZipInfo | None = None
        container = by_name.get("META-INF/container.xml")
        if container is not None:
            container_root = parse_xml_bytes(
                _read_member(archive, container, path), f"{path}:{container.filename}"
            )
            rootfiles = [
                e for e in container_root.iter() if isinstance(e.tag, str) and _local(e.tag) == "rootfile"
            ]
            for rootfile in rootfiles:
                media_type = rootfile.get("media-type")
                if media_type is None or "musicxml" in media_type or media_type.endswith("xml"):
                    full_path = rootfile.get("full-path")
                    if not full_path:
                        continue
                    _check_member_name(full_path, path)
                    target = by_name.get(full_path)
                    if target is None:
                        raise InputError(f"container.xml names a missing rootfile {full_path!r}", path)
                    break
        if target is None:
            for info in infos:
                name = info.filename
                if name.startswith("META-INF") or info.is_dir():
                    continue
                if name.lower().endswith((".xml", ".musicxml")):
                    target = info
                    break
        if target is None:
            raise InputError("archive contains no MusicXML document", path)
        return _read_member(archive, target, path)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_xml_file_bytes(path: str | Path) -> bytes:
    """The MusicXML document bytes of ``path`` (``.mxl`` archives are unpacked; detected by content)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise InputError("is a directory", path)
        if size > MAX_ARCHIVE_TOTAL_BYTES:
            raise InputError(f"file is too large ({size} bytes)", path)
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except PermissionError:
        raise InputError("permission denied", path) from None
    except IsADirectoryError:
        raise InputError("is a directory", path) from None
    except OSError as error:
        raise InputError(f"cannot read file: {error.strerror or error}", path) from None
    if not data:
        raise InputError("empty file", path)
    if data.startswith(_ZIP_MAGIC):
        return read_mxl_bytes(data, path)
    if path.suffix.lower() == ".mxl":
        raise InputError("not a valid MXL (zip) archive", path)
    return data


def read_musicxml(path: str | Path) -> Any:
    """Parse a ``.musicxml`` / ``.xml`` / ``.mxl`` file safely; return the document's root element."""
    return parse_xml_bytes(read_xml_file_bytes(path), path)


def parse_musicxml(data: bytes | str, name: str | Path = "<bytes>") -> Any:
    """Like :func:`read_musicxml` for in-memory content: ``.mxl`` archive bytes or an XML document."""
    if isinstance(data, bytes) and data.startswith(_ZIP_MAGIC):
        data = read_mxl_bytes(data, name)
    return parse_xml_bytes(data, name)
