"""LMX linearizer / delinearizer: conformance with the reference (ufal/olimpic-icdar24), round trip,
robustness on malformed token sequences.

The conformance data lives in the shared folder beside the checkout (../shared/conformance/lmx,
made by running the reference linearizer); the tests skip with a reason when it is absent.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest

from umt.errors import InputError
from umt.tokenizers import lmx
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "lmx"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLIMPIC_CASES = sorted((SHARED / "olimpic").rglob("*.xml")) if SHARED.is_dir() else []
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared conformance data not found at {SHARED}"
)


def _music21_corpus() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _reference_rows() -> list[dict]:
    with open(SHARED / "music21_reference.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


# -- conformance -------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("case", OLIMPIC_CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_olimpic_cases_match_the_reference_per_system(case: Path) -> None:
    expected = lmx.parse_lmx_text(case.with_suffix(".lmx").read_text(encoding="utf-8"))
    assert lmx.linearize_systems(case) == expected


@needs_shared
def test_olimpic_cases_are_present() -> None:
    assert len(OLIMPIC_CASES) >= 6


@pytest.fixture(scope="module")
def corpus_roots() -> dict[str, object]:
    """The parsed music21 corpus files of the conformance rows, parsed once for the tests below."""
    from umt.utils.safe_xml import read_musicxml

    corpus = _music21_corpus()
    return {row["file"]: read_musicxml(corpus / row["file"]) for row in _reference_rows()}


@needs_shared
def test_music21_corpus_matches_the_reference(corpus_roots: dict[str, object]) -> None:
    rows = _reference_rows()
    mismatches = []
    for row in rows:
        tokens = lmx.linearize_xml(corpus_roots[row["file"]], row["part_index"])
        if " ".join(tokens) != row["lmx"]:
            mismatches.append(f"{row['file']}#{row['part_index']}")
    matched = len(rows) - len(mismatches)
    print(f"\nLMX conformance on music21's corpus: {matched}/{len(rows)} parts identical")
    assert len(rows) == 597
    assert matched >= 0.99 * len(rows), mismatches[:10]
    assert not mismatches, f"{len(mismatches)} parts differ, e.g. {mismatches[:5]}"


@needs_shared
def test_music21_corpus_by_system_matches_the_reference(corpus_roots: dict[str, object]) -> None:
    """Split into systems, music21's corpus linearizes exactly as the reference does.

    tests/fixtures/lmx_by_system.json holds, for each of the 597 parts of music21_reference.jsonl
    (file relative to music21 10.5.1's corpus folder, 0-based part index), one digest per system of
    the reference's by-system output: the first 16 hex digits of the sha256 of the system's tokens
    joined by single spaces. It was made once by running the reference, ufal/olimpic-icdar24 at
    commit ad74046f3729a4926a0b9a0d5696110f53d80b8e: each file parsed with ``xml.etree`` (the score
    member of an .mxl), ``app.symbolic.split_part_to_systems.split_part_to_systems(part)`` with its
    defaults, then ``app.linearization.Linearizer.Linearizer(fail_on_unknown_tokens=False)
    .process_part(system.part)`` on every system of every page, in order (no system came out empty;
    the same script checked that the reference's whole-part output equals the jsonl's on all 597).
    The generating script is not part of the repository; nothing of the reference is committed.
    """
    import hashlib

    import music21

    fixture = json.loads((FIXTURES / "lmx_by_system.json").read_text(encoding="utf-8"))
    if fixture["music21"] != music21.__version__:
        pytest.skip(f"fixture made on music21 {fixture['music21']}'s corpus, not {music21.__version__}")
    parts = fixture["parts"]
    rows = _reference_rows()
    assert [(p["file"], p["part_index"]) for p in parts] == [(r["file"], r["part_index"]) for r in rows]
    mismatches = []
    for expected in parts:
        systems = lmx.linearize_xml(corpus_roots[expected["file"]], expected["part_index"], by_system=True)
        digests = [hashlib.sha256(" ".join(s).encode()).hexdigest()[:16] for s in systems]
        if digests != expected["systems"]:
            mismatches.append(
                f"{expected['file']}#{expected['part_index']} "
                f"({len(digests)} systems, reference {len(expected['systems'])})"
            )
    matched = len(parts) - len(mismatches)
    multi = sum(len(p["systems"]) > 1 for p in parts)
    print(f"\nLMX by-system conformance on music21's corpus: {matched}/{len(parts)} parts identical")
    assert multi >= 580  # the corpus exercises the splitting: most parts have several systems
    assert not mismatches, f"{len(mismatches)} parts differ, e.g. {mismatches[:5]}"


# -- round trip ---------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("case", OLIMPIC_CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_delinearize_then_linearize_is_the_identity_on_conformance_cases(case: Path) -> None:
    for system in lmx.parse_lmx_text(case.with_suffix(".lmx").read_text(encoding="utf-8")):
        result = lmx.delinearize(system)
        assert (result.dropped, result.repaired) == (0, 0)
        assert lmx.linearize_string(result.musicxml) == system


@needs_shared
def test_round_trip_on_music21_corpus_reference_sequences() -> None:
    rows = _reference_rows()
    same = 0
    for row in rows:
        tokens = row["lmx"].split()
        result = lmx.delinearize(tokens)
        same += lmx.linearize_string(result.musicxml) == tokens and result.dropped == result.repaired == 0
    print(f"\nLMX -> MusicXML -> LMX identical on {same}/{len(rows)} music21 corpus parts")
    assert same >= 0.99 * len(rows)


@needs_shared
def test_by_system_round_trip_on_music21_corpus_keeps_the_systems(corpus_roots: dict[str, object]) -> None:
    """linearize by system -> delinearize the systems -> linearize by system gives the same systems,
    and the whole part linearizes as the original did (the re-stated clefs and keys are not kept)."""
    rows = _reference_rows()
    same_systems = same_whole = 0
    for row in rows:
        systems = lmx.linearize_xml(corpus_roots[row["file"]], row["part_index"], by_system=True)
        result = lmx.delinearize(systems)
        assert (result.dropped, result.repaired) == (0, 0), row["file"]
        same_systems += lmx.linearize_string(result.musicxml, by_system=True) == systems
        same_whole += " ".join(lmx.linearize_string(result.musicxml)) == row["lmx"]
    print(f"\nby system -> MusicXML -> by system identical on {same_systems}/{len(rows)} parts")
    assert same_systems == same_whole == len(rows) == 597


def test_delinearized_systems_keep_their_breaks() -> None:
    systems = [
        ["measure", "key:fifths:-1", "time", "beats:2", "beat-type:4", "clef:F4", "rest", "half"],
        ["measure", "key:fifths:-1", "clef:F4", "rest", "half", "measure", "rest", "half"],
        ["measure", "key:fifths:2", "clef:F4", "rest", "half"],  # a key change at a system start
        ["clef:G2", "rest", "half"],  # no leading 'measure': one is opened
    ]
    result = lmx.delinearize(systems)
    assert (result.dropped, result.repaired) == (0, 1)
    assert result.musicxml.count('<print new-system="yes"/>') == 3
    assert lmx.linearize_string(result.musicxml, by_system=True) == [
        *systems[:3],
        ["measure", "key:fifths:2", "clef:G2", "rest", "half"],
    ]
    # the whole part holds only real changes: the key at system 3, the clef at system 4
    whole = lmx.linearize_string(result.musicxml)
    assert whole[8:] == [
        *("measure", "rest", "half", "measure", "rest", "half"),
        *("measure", "key:fifths:2", "rest", "half", "measure", "clef:G2", "rest", "half"),
    ]
    # one line per system in plain text, as `umt lmx linearize --by-system` prints
    text = "\n".join(" ".join(system) for system in systems[:3]) + "\n"
    assert lmx.delinearize(text).musicxml == lmx.delinearize(systems[:3]).musicxml
    assert lmx.delinearize(systems[0]).musicxml.count("<print") == 0


@needs_shared
def test_delinearized_musicxml_parses_in_music21_with_pitches() -> None:
    import music21

    case = SHARED / "olimpic" / "basics" / "grandstaff.lmx"
    result = lmx.delinearize(case.read_text(encoding="utf-8"))
    score = music21.converter.parse(result.musicxml, format="musicxml")
    pitches = sorted(n.pitch.nameWithOctave for n in score.flatten().notes)
    assert pitches == ["A4", "C3", "E5", "G3"]


def test_pitch_alterations_follow_key_accidentals_and_ties() -> None:
    import music21

    # G major (F#), an explicit natural that carries through the measure, a tie into the next measure
    tokens = [
        "measure",
        "key:fifths:1",
        "time",
        "beats:2",
        "beat-type:4",
        "clef:G2",
        "F4",
        "quarter",
        "natural",
        "F4",
        "quarter",
        "tied:start",
        "measure",
        "F4",
        "quarter",
        "tied:stop",
        "F4",
        "quarter",
    ]
    result = lmx.delinearize(tokens)
    assert (result.dropped, result.repaired) == (0, 0)
    score = music21.converter.parse(result.musicxml, format="musicxml")
    assert [n.pitch.name for n in score.flatten().notes] == ["F", "F", "F", "F#"]
    assert lmx.linearize_string(result.musicxml) == tokens


def test_verovio_renders_delinearized_musicxml() -> None:
    verovio = pytest.importorskip("verovio")
    tokens = [
        "measure",
        "key:fifths:-2",
        "time",
        "beats:3",
        "beat-type:4",
        "clef:G2",
        "B4",
        "quarter",
        "stem:down",
        "C5",
        "eighth",
        "beam:begin",
        "D5",
        "eighth",
        "beam:end",
        "E5",
        "quarter",
    ]
    toolkit = verovio.toolkit()
    assert toolkit.loadData(lmx.delinearize(tokens).musicxml)
    assert "<svg" in toolkit.renderToSVG(1)


# -- malformed input ----------------------------------------------------------------------------


def _corruptions(tokens: list[str], rng: random.Random, count: int):
    for _ in range(count):
        bad = list(tokens)
        kind = rng.randrange(6)
        if kind == 0:
            rng.shuffle(bad)
        elif kind == 1:
            bad = bad[: rng.randrange(len(bad) + 1)]
        elif kind == 2:
            bad = bad[rng.randrange(len(bad)) :]
        elif kind == 3:
            for _ in range(rng.randrange(1, 20)):
                bad.insert(rng.randrange(len(bad) + 1), rng.choice((*LMX_TOKENS, "junk", "42in5")))
        elif kind == 4:
            for _ in range(rng.randrange(1, 20)):
                if bad:
                    del bad[rng.randrange(len(bad))]
        else:
            bad = [rng.choice(LMX_TOKENS) for _ in range(rng.randrange(150))]
        yield bad


def test_malformed_sequences_never_raise_and_music21_parses_the_output() -> None:
    import music21

    warnings.filterwarnings("ignore")
    rng = random.Random(1234)
    base = [
        "measure",
        "key:fifths:2",
        "time",
        "beats:3",
        "beat-type:4",
        "clef:G2",
        "staff:1",
        "clef:F4",
        "staff:2",
        "D4",
        "voice:1",
        "quarter",
        "stem:up",
        "staff:1",
        "chord",
        "F4",
        "quarter",
        "sharp",
        "E4",
        "eighth",
        "beam:begin",
        "tied:start",
        "F4",
        "eighth",
        "3in2",
        "tuplet:start",
        "beam:end",
        "slur:start",
        "G4",
        "16th",
        "dot",
        "staccato",
        "tremolo:single",
        "tremolo:3",
        "backup",
        "half",
        "dot",
        "C3",
        "voice:5",
        "half",
        "staff:2",
        "grace:slash",
        "grace",
        "A2",
        "eighth",
        "rest",
        "quarter",
        "fermata",
        "measure",
        "rest",
        "voice:1",
        "rest:measure",
        "staff:1",
        "backup",
        "whole",
        "forward",
        "half",
        "B2",
        "voice:5",
        "half",
        "staff:2",
        "slur:stop",
    ]
    total_dropped = total_repaired = 0
    for bad in _corruptions(base, rng, 60):
        result = lmx.delinearize(bad)
        total_dropped += result.dropped
        total_repaired += result.repaired
        music21.converter.parse(result.musicxml, format="musicxml")
        lmx.linearize_string(result.musicxml)  # and our own linearizer reads it back
        cut = rng.randrange(len(bad) + 1)  # the same tokens as two systems
        lmx.linearize_string(lmx.delinearize([bad[:cut], bad[cut:]]).musicxml, by_system=True)
    assert total_dropped > 0 and total_repaired > 0


def test_counts_for_specific_malformations() -> None:
    result = lmx.delinearize(
        ["junk", "quarter", "C4", "measure", "beats:4", "chord", "D4", "quarter", "stem:up"]
    )
    # dropped: 'junk' (unknown), 'C4' (a prefix with no note after it in its measure), 'beats:4'
    # (a suffix with nothing before it); repaired: a measure opened for the leading 'quarter',
    # that pitchless 'quarter' made a rest, the chord flag with no note to attach to removed
    assert (result.dropped, result.repaired) == (3, 3)
    assert any("junk" in p for p in result.problems)
    empty = lmx.delinearize([])
    assert (empty.dropped, empty.repaired) == (0, 0) and "<measure" in empty.musicxml


def test_time_signature_without_beats_is_completed() -> None:
    result = lmx.delinearize(["measure", "time", "beat-type:8", "clef:G2", "C4", "eighth"])
    assert result.repaired == 1
    assert lmx.linearize_string(result.musicxml)[:4] == ["measure", "time", "beats:4", "beat-type:8"]


# -- linearizer details and API ----------------------------------------------------------------


def _score(
    measures: str, part_list: str = '<score-part id="P1"><part-name>Voice</part-name></score-part>'
) -> str:
    return (
        f'<score-partwise version="4.0"><part-list>{part_list}</part-list>'
        f'<part id="P1">{measures}</part></score-partwise>'
    )


def test_backup_durations_split_like_the_reference() -> None:
    xml = _score(
        "<measure><attributes><divisions>3</divisions></attributes>"
        "<note><pitch><step>C</step><octave>4</octave></pitch><duration>3</duration><type>quarter</type></note>"
        "<backup><duration>1</duration></backup><forward><duration>9</duration></forward></measure>"
    )
    # 1 division of 3 per quarter: the reference's integer halving gives an eighth for it
    assert lmx.linearize_string(xml) == [
        "measure",
        "C4",
        "quarter",
        "backup",
        "eighth",
        "forward",
        "half",
        "forward",
        "quarter",
    ]


def test_values_outside_the_vocabulary_are_left_out_not_raised() -> None:
    xml = _score(
        "<measure><attributes><divisions>1</divisions><time><beats>3+2</beats><beat-type>8</beat-type></time>"
        "<clef><sign>percussion</sign></clef></attributes>"
        "<note><unpitched/><duration>1</duration><type>quarter</type><accidental>quarter-sharp</accidental>"
        "<stem>double</stem></note></measure>"
    )
    assert lmx.linearize_string(xml) == ["measure", "quarter"]


def _two_parts(first: str, second: str) -> str:
    """A violin-ish part P1 (a rest) and P2 (an E5), with the given <score-part> contents."""
    return (
        f'<score-partwise><part-list><score-part id="P1">{first}</score-part>'
        f'<score-part id="P2">{second}</score-part></part-list>'
        '<part id="P1"><measure><note><rest/><duration>1</duration><type>quarter</type></note>'
        "</measure></part>"
        '<part id="P2"><measure><note><pitch><step>E</step><octave>5</octave></pitch><duration>1</duration>'
        "<type>half</type></note></measure></part></score-partwise>"
    )


def _names(part_name: str | None, instrument_name: str | None = None) -> str:
    xml = f"<part-name>{part_name}</part-name>" if part_name is not None else ""
    if instrument_name is not None:
        instrument = f"<instrument-name>{instrument_name}</instrument-name>"
        xml += f'<score-instrument id="I">{instrument}</score-instrument>'
    return xml


def test_default_part_is_the_piano_and_part_index_selects(tmp_path: Path) -> None:
    path = tmp_path / "two.musicxml"
    path.write_text(_two_parts(_names("Violin", "Violin"), _names("Piano", "Piano")))
    assert lmx.linearize(path) == ["measure", "E5", "half"]
    assert lmx.linearize(path, part_index=0) == ["measure", "rest", "quarter"]
    with pytest.raises(InputError, match=r"part index 5 out of range"):
        lmx.linearize(path, part_index=5)


@pytest.mark.parametrize(
    ("first", "second", "piano_is_taken"),
    [
        (_names("Violin", "Violin"), _names("Continuo", "Harpsichord"), True),
        (_names("Violin", "Violin"), _names("Pianoforte", "SmartMusic SoftSynth"), True),
        (_names("Violin", "Violin"), _names("Klavier", "Acoustic Grand Piano"), True),
        # names the reference does not take for a piano: a part-name other than "Pianoforte",
        # other spellings (it compares exactly)
        (_names("Violin", "Violin"), _names("Piano", "SmartMusic SoftSynth"), False),
        (_names("Violin", "Violin"), _names("Piano"), False),
        (_names("Violin", "Violin"), _names("piano", "piano"), False),
        (_names("Violin", "Violin"), _names("Pno", " Piano"), False),
        # a score-part without instrument-name before the piano: the reference's lookup fails there
        # (bach/bwv8.6.mxl: Soprano .. Bass, then a Harpsichord continuo) and it takes the first part
        (_names("Soprano"), _names("Continuo", "Harpsichord"), False),
        (_names(None, "Violin"), _names("Piano", "Piano"), False),
        (_names(None, "Piano"), _names("Piano", "Piano"), False),  # P1 itself is the piano
    ],
)
def test_default_part_follows_the_references_piano_lookup(
    tmp_path: Path, first: str, second: str, piano_is_taken: bool
) -> None:
    path = tmp_path / "two.musicxml"
    path.write_text(_two_parts(first, second))
    expected = ["measure", "E5", "half"] if piano_is_taken else ["measure", "rest", "quarter"]
    assert lmx.linearize(path) == expected


def test_systems_restate_clef_and_key_but_not_time() -> None:
    xml = _score(
        "<measure><attributes><divisions>1</divisions><key><fifths>-1</fifths></key>"
        "<time><beats>2</beats><beat-type>4</beat-type></time><clef><sign>F</sign><line>4</line></clef></attributes>"
        "<note><rest/><duration>2</duration><type>half</type></note></measure>"
        '<measure><print new-system="yes"/>'
        "<note><rest/><duration>2</duration><type>half</type></note></measure>"
    )
    assert lmx.linearize_string(xml, by_system=True) == [
        ["measure", "key:fifths:-1", "time", "beats:2", "beat-type:4", "clef:F4", "rest", "half"],
        ["measure", "key:fifths:-1", "clef:F4", "rest", "half"],
    ]
    assert lmx.linearize_string(xml) == [
        "measure",
        "key:fifths:-1",
        "time",
        "beats:2",
        "beat-type:4",
        "clef:F4",
        "rest",
        "half",
        "measure",
        "rest",
        "half",
    ]


def test_mxl_and_already_parsed_trees(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET
    import zipfile

    xml = _score(
        "<measure><note><pitch><step>G</step><octave>3</octave></pitch><duration>4</duration><type>whole</type></note></measure>"
    )
    path = tmp_path / "a.mxl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "META-INF/container.xml",
            '<container><rootfiles><rootfile full-path="score/a.xml"/></rootfiles></container>',
        )
        archive.writestr("decoy.xml", _score("<measure/>"))
        archive.writestr("score/a.xml", xml)
    assert lmx.linearize(path) == ["measure", "G3", "whole"]
    assert lmx.linearize_string(path.read_bytes()) == ["measure", "G3", "whole"]
    assert lmx.linearize_xml(ET.fromstring(xml)) == ["measure", "G3", "whole"]


def test_bad_files_raise_input_error_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part>")
    with pytest.raises(InputError, match=r"broken.musicxml: not well-formed XML"):
        lmx.linearize(broken)
    other = tmp_path / "other.xml"
    other.write_text("<html/>")
    with pytest.raises(InputError, match=r"other.xml: not a MusicXML score \(root element <html>\)"):
        lmx.linearize(other)


def test_parse_and_format_lmx_files() -> None:
    systems = [
        ["measure", "clef:G2", "C4", "quarter"],
        ["measure", "D4", "half", "measure", "rest", "rest:measure"],
    ]
    text = lmx.format_lmx(systems)
    assert text.startswith("version: 1.0\nflavor: core\n---\n")
    assert lmx.parse_lmx_text(text) == systems
    # plain text: a system per line
    assert lmx.parse_lmx_text("measure C4 quarter # comment\n\n  measure D4 half\n") == [
        ["measure", "C4", "quarter"],
        ["measure", "D4", "half"],
    ]
    assert lmx.parse_lmx_text("# nothing\n") == [[]]
