"""Safe XML / MXL reading: hostile documents and archives are refused with InputError."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from umt.errors import InputError
from umt.utils import safe_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<score-partwise>&lol3;</score-partwise>"""


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(InputError, match=r"bomb.xml: XML document declares entities"):
        safe_xml.parse_xml_bytes(BILLION_LAUGHS, "bomb.xml")


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xxe = f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]><x>&e;</x>'.encode()
    with pytest.raises(InputError, match=r"declares entities"):
        safe_xml.parse_xml_bytes(xxe, "xxe.xml")


def test_entities_in_utf16_are_refused_after_parsing() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'.encode(
        "utf-16"
    )
    with pytest.raises(InputError, match=r"declares entities"):
        safe_xml.parse_xml_bytes(doc, "u16.xml")


def test_external_dtd_is_not_loaded_and_comments_are_dropped() -> None:
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
        b'"http://www.musicxml.org/dtds/partwise.dtd">'
        b"<score-partwise><!-- c --><?pi x?><part-list/></score-partwise>"
    )
    root = safe_xml.parse_xml_bytes(doc, "ok.xml")
    assert [child.tag for child in root] == ["part-list"]


def test_malformed_and_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"bad.xml: not well-formed XML"):
        safe_xml.parse_xml_bytes(b"<a><b></a>", "bad.xml")
    empty = tmp_path / "empty.musicxml"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.musicxml: empty file"):
        safe_xml.read_musicxml(empty)
    with pytest.raises(InputError, match=r"missing.xml: no such file"):
        safe_xml.read_musicxml(tmp_path / "missing.xml")
    fake = tmp_path / "fake.mxl"
    fake.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"fake.mxl: not a valid MXL"):
        safe_xml.read_musicxml(fake)


def _mxl(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_container_rootfile_is_honoured(tmp_path: Path) -> None:
    container = (
        b'<container><rootfiles><rootfile full-path="real.musicxml" '
        b'media-type="application/vnd.recordare.musicxml+xml"/></rootfiles></container>'
    )
    path = _mxl(
        tmp_path / "a.mxl",
        {
            "META-INF/container.xml": container,
            "decoy.xml": b"<decoy/>",
            "real.musicxml": b"<score-partwise/>",
        },
    )
    assert safe_xml.read_musicxml(path).tag == "score-partwise"
    missing = _mxl(tmp_path / "b.mxl", {"META-INF/container.xml": container.replace(b"real", b"gone")})
    with pytest.raises(InputError, match=r"missing rootfile 'gone.musicxml'"):
        safe_xml.read_musicxml(missing)
    # no container: first .xml outside META-INF
    assert (
        safe_xml.read_musicxml(_mxl(tmp_path / "c.mxl", {"s.xml": b"<score-partwise/>"})).tag
        == "score-partwise"
    )


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    path = _mxl(tmp_path / "evil.mxl", {"../../etc/passwd.xml": b"<x/>"})
    with pytest.raises(InputError, match=r"unsafe path"):
        safe_xml.read_musicxml(path)


def test_archive_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many = _mxl(tmp_path / "many.mxl", {f"m{i}.xml": b"<x/>" for i in range(12)})
    monkeypatch.setattr(safe_xml, "MAX_ARCHIVE_MEMBERS", 10)
    with pytest.raises(InputError, match=r"too many members"):
        safe_xml.read_musicxml(many)
    bomb = _mxl(tmp_path / "bomb.mxl", {"big.xml": b"<x>" + b" " * 100_000 + b"</x>"})
    monkeypatch.setattr(safe_xml, "MAX_ARCHIVE_TOTAL_BYTES", 50_000)
    with pytest.raises(InputError, match=r"inflates to"):
        safe_xml.read_musicxml(bomb)
    monkeypatch.setattr(safe_xml, "MAX_ARCHIVE_TOTAL_BYTES", 10**9)
    monkeypatch.setattr(safe_xml, "MAX_MEMBER_BYTES", 50_000)
    with pytest.raises(InputError, match=r"too large"):
        safe_xml.read_musicxml(bomb)
