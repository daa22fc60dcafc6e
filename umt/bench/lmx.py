"""LMX linearization throughput (tokens/s) over the MusicXML / MXL files of music21's corpus.

    python -m umt.bench tokenizers [--limit N] [--reference-dir DIR] [--repeat R]

Two figures, side by side with a peer and their ratio:
  * linearize only: every part of every file, trees parsed beforehand;
  * parse + linearize: reading the file (unzipping .mxl) and parsing it included.
With ``--reference-dir`` pointing at a local checkout of ufal/olimpic-icdar24 the peer is its
``Linearizer`` (on ``xml.etree`` trees, loaded like its ``MxlFile``), on the same files and parts;
files on which the reference fails are left out of both. Without it the peer is a naive baseline,
music21's own MusicXML parser (``converter.parse``) for the parse + linearize figure (it says so);
the linearize-only figure then has no peer.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path

from umt.tokenizers.lmx import _parts, linearize_part
from umt.utils.safe_xml import read_musicxml


def _corpus_files(limit: int | None) -> list[Path]:
    import music21

    corpus = Path(music21.__file__).parent / "corpus"
    files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in {".mxl", ".xml", ".musicxml"})
    return files[:limit] if limit else files


def _reference_load(path: Path):  # like the reference's MxlFile.load_mxl / ET.parse
    import xml.etree.ElementTree as ET

    if path.suffix.lower() == ".mxl":
        with zipfile.ZipFile(path) as archive:
            name = next(
                i.filename
                for i in archive.infolist()
                if not i.filename.startswith("META-INF") and i.filename.endswith(".xml")
            )
            return ET.parse(io.BytesIO(archive.read(name))).getroot()
    return ET.parse(path).getroot()


def _best(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _row(name: str, ours: float, peer: float | None, peer_name: str) -> str:
    if peer is None:
        return f"{name:<22} {ours:>14,.0f} {'-':>14}  {'-':>7}  ({peer_name})"
    return f"{name:<22} {ours:>14,.0f} {peer:>14,.0f}  {ours / peer:>6.2f}x  ({peer_name})"


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench tokenizers (lmx)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N corpus files")
    parser.add_argument("--reference-dir", type=Path, default=None, help="checkout of ufal/olimpic-icdar24")
    parser.add_argument("--repeat", type=int, default=3, help="best of R timings")
    args, _ = parser.parse_known_args(argv)  # other tokenizer benchmarks share the argument list

    files = _corpus_files(args.limit)
    reference = None
    if args.reference_dir is not None:
        sys.path.insert(0, str(args.reference_dir.resolve()))
        from app.linearization.Linearizer import Linearizer  # type: ignore[import-not-found]

        def reference(root):
            tokens = 0
            for part in root.findall("part"):
                linearizer = Linearizer(fail_on_unknown_tokens=False)
                linearizer.process_part(part)
                tokens += len(linearizer.output_tokens)
            return tokens

    # keep only files that both sides read (score-partwise; the reference asserts on the rest)
    kept, ours_trees, ref_trees = [], [], []
    for path in files:
        try:
            root = read_musicxml(path)
            if root.tag != "score-partwise":
                continue
            if reference is not None:
                ref_root = _reference_load(path)
                reference(ref_root)
                ref_trees.append(ref_root)
        except Exception:  # the reference failing on a file: leave it out of both sides
            continue
        kept.append(path)
        ours_trees.append(root)

    def ours_linearize():
        return sum(len(linearize_part(part)) for root in ours_trees for part in _parts(root, ""))

    def ours_full():
        for path in kept:
            root = read_musicxml(path)
            for part in _parts(root, path):
                linearize_part(part)

    tokens = ours_linearize()
    t_ours_lin = _best(ours_linearize, args.repeat)
    t_ours_full = _best(ours_full, args.repeat)
    print(
        f"LMX linearization over {len(kept)} music21 corpus files ({tokens:,} tokens), "
        f"tokens/s, best of {args.repeat}"
    )
    print(f"{'':<22} {'umt':>14} {'peer':>14}  {'ratio':>7}")
    if reference is not None:
        ref_tokens = sum(reference(root) for root in ref_trees)
        t_ref_lin = _best(lambda: [reference(root) for root in ref_trees], args.repeat)
        t_ref_full = _best(lambda: [reference(_reference_load(p)) for p in kept], args.repeat)
        name = "olimpic-icdar24 Linearizer"
        print(_row("linearize only", tokens / t_ours_lin, ref_tokens / t_ref_lin, name))
        print(_row("parse + linearize", tokens / t_ours_full, ref_tokens / t_ref_full, name))
        if ref_tokens != tokens:
            print(f"note: token counts differ (umt {tokens:,}, reference {ref_tokens:,})")
    else:
        import warnings

        import music21

        warnings.filterwarnings("ignore")

        def music21_parse():
            for path in kept:
                music21.converter.parse(path, forceSource=True)

        t_m21 = _best(music21_parse, 1)
        print(_row("linearize only", tokens / t_ours_lin, None, "no peer without --reference-dir"))
        print(
            _row(
                "parse + linearize",
                tokens / t_ours_full,
                tokens / t_m21,
                "naive baseline: music21 converter.parse alone, no linearizing",
            )
        )
