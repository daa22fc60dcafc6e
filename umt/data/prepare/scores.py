"""Score-image data sets for OMR and engraving: system images with their LMX.

Both publish split files ``ROOT/samples.{train,dev,test}.txt``, one sample id a line:

* **OLiMPiC 1.0** (Mayer et al., ICDAR 2024; ``olimpic-1.0-synthetic`` or ``olimpic-1.0-scanned``):
  ids ``samples/SCORE/pP-sS``; files ``ROOT/ID.png`` and ``ROOT/ID.lmx``. The piece is the
  score (``SCORE``), so all systems of a score share its split.
* **GrandStaff-LMX** (``grandstaff-lmx.1.0``): ids ``COMPOSER/.../NAME``; ``ROOT/ID.lmx`` and the
  GrandStaff images ``ROOT/grandstaff/ID.jpg`` and ``ID_distorted.jpg`` (the camera-like copy,
  a second example ``ID.distorted`` with the same LMX). The piece is the sample (GrandStaff's
  splits are by sample).

Each sample becomes ``image/SPLIT/ID.EXT`` (the image file as published, checked to decode) and
``lmx/SPLIT/ID.lmx`` (checked to hold tokens), one record ``{"key", "image", "lmx", "split",
"piece"}``. Images are measured and scaled when baked (:mod:`umt.tokenizers.image`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from umt.data.prepare.base import Converter, WorkUnit
from umt.errors import InputError, UserError
from umt.utils.io import atomic_write_bytes

SPLIT_FILES = ("train", "dev", "test")


class SampleListConverter(Converter):
    """A data set of samples listed in ``samples.SPLIT.txt`` (see the module docstring)."""

    missing_source = "listed in the split file, but no such file"

    def images(self, sample: str) -> dict[str, str]:
        """Example key suffix ("" for the sample itself) -> image path relative to the root."""
        raise NotImplementedError

    def piece(self, sample: str) -> str:
        return sample

    def units(self) -> list[WorkUnit]:
        files = [(split, self.root / f"samples.{split}.txt") for split in SPLIT_FILES]
        if not any(path.is_file() for _, path in files):
            raise UserError(
                f"no samples.{{{','.join(SPLIT_FILES)}}}.txt: not the {self.name} data set's layout",
                self.root,
            )
        units = []
        for split, path in files:
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                sample = line.strip().strip("/")
                if not sample or sample.startswith("#"):
                    continue
                if ".." in Path(sample).parts or Path(sample).is_absolute():
                    raise UserError(f"sample id {sample!r} leaves the data set folder", path)
                for suffix, image in self.images(sample).items():
                    units.append(
                        WorkUnit(
                            key=sample + suffix,
                            split=split,
                            piece=self.piece(sample),
                            sources={"image": image, "lmx": f"{sample}.lmx"},
                        )
                    )
        return units

    def convert(self, unit: WorkUnit) -> dict[str, Any]:
        sources = self.source_files(unit)
        image_in, lmx_in = sources["image"], sources["lmx"]
        _check_image(image_in)
        lmx_text = lmx_in.read_text(encoding="utf-8", errors="strict")
        if not lmx_text.split():
            raise InputError("holds no LMX tokens", lmx_in)
        image = self.output_path("image", unit, image_in.suffix.lower())
        lmx = self.output_path("lmx", unit, ".lmx")
        atomic_write_bytes(self.out / image, image_in.read_bytes())
        atomic_write_bytes(self.out / lmx, lmx_text.encode("utf-8"))
        return {
            "key": unit.key,
            "split": unit.split,
            "piece": unit.piece,
            "image": image.as_posix(),
            "lmx": lmx.as_posix(),
        }


def _check_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > 50_000_000:
                raise InputError(f"image of {image.width}x{image.height} pixels is too large", path)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"not a readable image ({error})", path) from None


class OlimpicConverter(SampleListConverter):
    name = "olimpic"
    description = "OLiMPiC 1.0 (synthetic or scanned) pianoform systems with LMX, published splits"

    def images(self, sample: str) -> dict[str, str]:
        return {"": f"{sample}.png"}

    def piece(self, sample: str) -> str:
        parts = Path(sample).parts
        return "/".join(parts[:-1]) or sample


class GrandStaffConverter(SampleListConverter):
    name = "grandstaff"
    description = "GrandStaff-LMX piano systems with LMX (plain and distorted images), published splits"

    def images(self, sample: str) -> dict[str, str]:
        return {"": f"grandstaff/{sample}.jpg", ".distorted": f"grandstaff/{sample}_distorted.jpg"}
