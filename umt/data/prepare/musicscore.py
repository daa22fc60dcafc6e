"""MusicScore (Lin, Dai and Kong, 2024): IMSLP score PDFs to page images with their work's metadata.

Layout read: ``ROOT/**/SCORE.pdf`` (IMSLP files, ``IMSLP913207.pdf``), each with its work's
metadata ``SCORE.json`` beside it or in ``ROOT/metadata/`` (IMSLP's "General Information" fields:
:mod:`umt.musicscore.metadata`). As MusicScore was made:

* **PDF filter.** A PDF is kept when every image it embeds is 1-bit (black-and-white scans); one
  with a deeper image (grayscale or colour scans) is left out (``left_out.jsonl``). A PDF without
  embedded images is a vector score: it is rendered, and its pages say ``"source": "vector"``.
* **Pages** become ``page/SPLIT/SCORE_PAGE.jpg`` (1-based pages; MusicScore's page images) at
  ``dpi``, one record each with ``key``, ``page``, ``split``, ``piece`` (the work), ``score``,
  ``page_number``, ``source``, the work's ``metadata`` (its fields ``None`` when missing or
  garbled) and its ``prompt``. For the ``t2i`` task the page's systems are cut out
  (:func:`umt.data.systems.split_systems`) into a stacked-systems PNG ``image/SPLIT/...png``
  (``"image"``: the RQ-VAE tokenizer reads systems, 18 px staves, at most 416 px high, not whole
  pages) and the prompt is written to ``text/SPLIT/...txt`` (``"text"``), so ``umt bake image`` and
  ``umt bake text`` read the manifest as it is. A page without a staff is left out.
* **Non-score pages** (covers, title and text pages) are dropped when a page classifier is given
  (:mod:`umt.musicscore.classifier`; ``--classifier MODEL``): pages whose P(score) is below the
  threshold are left out, with the probability.
* **Splits** are drawn per work (seeded; 90 / 5 / 5 % train / valid / test), so no work is in two.

Bad PDFs (encrypted, truncated, pageless, too many or too large pages) are failures with their
reason; the others go on. Memory holds one page at a time.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umt.data.excerpts import assign_split
from umt.data.prepare.base import Converted, Converter, WorkUnit
from umt.errors import InputError, UserError
from umt.musicscore.metadata import prompt, read_metadata, work_id
from umt.utils.io import atomic_write_bytes, atomic_write_text

SPLITS = (("train", 0.90), ("valid", 0.05), ("test", 0.05))


@dataclass
class PdfImages:
    pages: int
    images: int
    deepest: int
    """Largest bits per pixel of an embedded image (0 without images)."""


def pdf_images(path: Path) -> PdfImages:
    """How many pages and embedded images a PDF has, and the deepest image's bits per pixel."""
    import pypdfium2.raw as pdfium_c

    from umt.data.systems import open_pdf, pdf_page

    document = open_pdf(path)
    try:
        images = deepest = 0
        for index in range(len(document)):
            page = pdf_page(document, index, path)
            try:
                objects = list(page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=4))
                for image in objects:
                    deepest = max(deepest, int(image.get_metadata().bits_per_pixel))
            except Exception as error:  # PdfiumError: an object the file's damage makes unreadable
                raise InputError(f"cannot read PDF page {index + 1} ({error})", path) from None
            images += len(objects)
        return PdfImages(len(document), images, deepest)
    finally:
        document.close()


@functools.cache
def _classifier(folder: str):
    """One page classifier per process (workers load it once, not once per PDF)."""
    from umt.musicscore.classifier import PageClassifier

    return PageClassifier.from_pretrained(folder)


class MusicScoreConverter(Converter):
    name = "musicscore"
    description = "MusicScore: IMSLP score PDFs -> 1-bit and vector pages with work metadata"

    def __init__(
        self,
        root: Path,
        out: Path,
        dpi: int = 100,
        classifier: str | None = None,
        threshold: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(root, out)
        if not 10 <= dpi <= 600:
            raise UserError(f"--dpi must be 10..600, not {dpi}")
        self.dpi, self.threshold, self.seed = int(dpi), float(threshold), int(seed)
        self.classifier = None if classifier is None else str(Path(classifier).resolve())
        if self.classifier is not None:
            _classifier(self.classifier)  # a bad folder is one line before any work

    @property
    def settings(self) -> dict[str, Any]:
        """What the output depends on besides the data set (a rerun with others is refused)."""
        return {
            "dpi": self.dpi,
            "classifier": self.classifier,
            "threshold": self.threshold,
            "seed": self.seed,
        }

    def units(self) -> list[WorkUnit]:
        pdfs = sorted(p for p in self.root.rglob("*") if p.suffix.lower() == ".pdf" and p.is_file())
        if not pdfs:
            raise UserError("no PDF files: not a MusicScore folder (IMSLP PDFs + a JSON per work)", self.root)
        units = []
        for pdf in pdfs:
            relative = pdf.relative_to(self.root)
            key = relative.with_suffix("").as_posix()
            beside, shared = pdf.with_suffix(".json"), self.root / "metadata" / f"{pdf.stem}.json"
            fields, problems = read_metadata(beside if beside.is_file() else shared)
            work = work_id(fields, key)
            units.append(
                WorkUnit(
                    key=key,
                    split=assign_split(work, self.seed, SPLITS),  # a work's pages all in one
                    piece=work,
                    sources={"pdf": relative.as_posix()},
                    extra={"metadata": fields, "problems": problems},
                )
            )
        return units

    def convert(self, unit: WorkUnit) -> Converted:
        from PIL import Image

        from umt.data.systems import iter_pdf_pages, split_systems, system_boxes
        from umt.tokenizers.image import write_systems_png

        path = self.source_files(unit)["pdf"]
        found = pdf_images(path)
        if found.deepest > 1:
            reason = f"embeds images of {found.deepest} bits per pixel (kept: 1-bit scans, vector scores)"
            return Converted([], [{"key": unit.key, "piece": unit.piece, "reason": reason}])
        metadata = unit.extra["metadata"]
        text_prompt = prompt(metadata)
        records, left_out = [], []
        for page, gray in enumerate(iter_pdf_pages(path, self.dpi), start=1):
            key = f"{unit.key}_{page}"
            if self.classifier is not None:
                probability = float(_classifier(self.classifier).score_probability([gray])[0])
                if probability < self.threshold:
                    reason = f"page {page} classified non-score (P(score) {probability:.2f})"
                    left_out.append({"key": key, "piece": unit.piece, "reason": reason})
                    continue
            if not system_boxes(gray):
                left_out.append({"key": key, "piece": unit.piece, "reason": f"page {page}: no staff found"})
                continue
            relative = self.output_path("page", unit, ".jpg", name=key)
            buffer = io.BytesIO()
            Image.fromarray(gray).save(buffer, format="JPEG", quality=90)
            atomic_write_bytes(self.out / relative, buffer.getvalue())
            systems = self.output_path("image", unit, ".png", name=key)  # what `umt bake image` reads
            atomic_write_bytes(self.out / systems, write_systems_png(split_systems(gray)))
            text = self.output_path("text", unit, ".txt", name=key)  # what `umt bake text` reads
            atomic_write_text(self.out / text, text_prompt + "\n")
            records.append(
                {
                    "key": key,
                    "page": relative.as_posix(),
                    "image": systems.as_posix(),
                    "text": text.as_posix(),
                    "split": unit.split,
                    "piece": unit.piece,
                    "score": unit.key,
                    "page_number": page,
                    "source": "scan" if found.images else "vector",
                    "metadata": metadata,
                    "prompt": text_prompt,
                }
            )
        return Converted(records, left_out)


def metadata_report(units: list[WorkUnit]) -> dict[str, Any]:
    """How many scores lack each metadata field or hold it garbled, and how many have no (or no
    readable) metadata file: ``OUT/metadata_report.json``."""
    counts: dict[str, int] = {}
    for unit in units:
        for problem in unit.extra["problems"]:
            counts[problem] = counts.get(problem, 0) + 1
    return {"scores": len(units), "problems": dict(sorted(counts.items()))}


def write_scales(manifest: Path, sizes: list[int], seed: int) -> dict[int, Path]:
    """MusicScore-style scales: ``OUT/scales/musicscore-N.jsonl``, N pages drawn from the manifest
    by one seeded permutation (a smaller scale is the start of a larger one)."""
    import numpy as np

    lines = [line for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    order = np.random.default_rng(seed).permutation(len(lines))
    written = {}
    for size in sizes:
        if size < 1:
            raise UserError(f"--scales must be positive page counts, not {size}")
        chosen = [lines[i] for i in order[: min(size, len(lines))]]
        path = manifest.parent / "scales" / f"musicscore-{size}.jsonl"
        path.parent.mkdir(exist_ok=True)
        atomic_write_text(path, "".join(line + "\n" for line in chosen))
        written[size] = path
    return written
