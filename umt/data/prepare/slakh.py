"""Slakh2100 (redux; Manilow et al., 2019): multi-instrument mixes rendered from Lakh MIDI.

Published layout: ``ROOT/{train,validation,test,omitted}/TrackNNNNN/`` with the mix
``mix.flac``, all instruments' MIDI ``all_src.mid`` (programs and drums as rendered) and
``metadata.yaml``. The split is the folder; ``omitted`` (the redux's duplicates) is left out. Each
track becomes one record of :class:`~umt.data.prepare.recordings.RecordingConverter`.
"""

from __future__ import annotations

from umt.data.prepare.base import WorkUnit
from umt.data.prepare.recordings import RecordingConverter
from umt.errors import UserError

SPLITS = ("train", "validation", "test")


class SlakhConverter(RecordingConverter):
    name = "slakh"
    description = "Slakh2100 (redux) mixes with all instruments' MIDI, published splits"

    def units(self) -> list[WorkUnit]:
        if not any((self.root / split).is_dir() for split in SPLITS):
            raise UserError(f"no {'/'.join(SPLITS)} folders: not a Slakh2100 folder", self.root)
        units = []
        for split in SPLITS:
            folder = self.root / split
            tracks = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
            for track in tracks:
                sources = {
                    "audio": f"{split}/{track.name}/mix.flac",
                    "midi": f"{split}/{track.name}/all_src.mid",
                }
                units.append(WorkUnit(key=track.name, split=split, piece=track.name, sources=sources))
        return units
