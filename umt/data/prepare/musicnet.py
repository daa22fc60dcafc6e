"""MusicNet (Thickstun et al., 2017) with the MusicNet-EM labels (Maman & Bermano, ICML 2022).

Published layout of MusicNet: ``ROOT/{train,test}_data/ID.wav`` (44.1 kHz recordings, the split is
the folder: 320 train, 10 test), the original labels ``ROOT/{train,test}_labels/ID.csv`` and
``ROOT/musicnet_metadata.csv`` (columns ``id, composer, composition, movement, ensemble, ...``).
MusicNet-EM's ``musicnet_em.zip`` unpacks beside them to ``ROOT/musicnet_em/ID.mid`` (some
copies nest it once more, ``ROOT/musicnet_em/musicnet_em/ID.mid``; both are read). EM has no
labels for 7 recordings (2194, 2211, 2227, 2230, 2292, 2305, 2310): they are left out and listed in
``left_out.jsonl``, not failed.

Each labelled recording becomes one record of :class:`~umt.data.prepare.recordings.RecordingConverter`,
with the EM MIDI as its notes. U-MusT tests on six of the ten test recordings (strings and winds,
``dataset_pair_paths/musicnet.json``): give that file as ``--splits`` to use its split.
"""

from __future__ import annotations

import csv

from umt.data.prepare.base import WorkUnit
from umt.data.prepare.recordings import RecordingConverter
from umt.errors import UserError

SPLIT_FOLDERS = {"train": "train_data", "test": "test_data"}
LABEL_FOLDERS = ("musicnet_em", "musicnet_em/musicnet_em")
METADATA_FILE = "musicnet_metadata.csv"
METADATA_FIELDS = ("composer", "composition", "movement", "ensemble")


class MusicNetConverter(RecordingConverter):
    name = "musicnet"
    description = "MusicNet recordings with the MusicNet-EM MIDI labels, published splits"

    def units(self) -> list[WorkUnit]:
        if not any((self.root / folder).is_dir() for folder in SPLIT_FOLDERS.values()):
            raise UserError("no train_data/ or test_data/: not a MusicNet folder", self.root)
        labels = self._label_files()
        metadata = self._metadata()
        units, self.left_out = [], []
        for split, folder in SPLIT_FOLDERS.items():
            recordings = sorted((self.root / folder).glob("*.wav")) if (self.root / folder).is_dir() else []
            for wav in recordings:
                key = wav.stem
                if key not in labels:
                    self.left_out.append(
                        {"key": key, "piece": key, "reason": "MusicNet-EM has no labels for it"}
                    )
                    continue
                sources = {"audio": f"{folder}/{wav.name}", "midi": labels[key]}
                units.append(
                    WorkUnit(key=key, split=split, piece=key, sources=sources, extra=metadata.get(key, {}))
                )
        return units

    def _label_files(self) -> dict[str, str]:
        """Recording id -> its EM MIDI file, relative to the root."""
        found: dict[str, str] = {}
        for folder in LABEL_FOLDERS:
            for midi in sorted((self.root / folder).glob("*.mid")):
                found.setdefault(midi.stem, f"{folder}/{midi.name}")
        if not found:
            raise UserError(
                "no musicnet_em/*.mid: unpack MusicNet-EM (musicnet_em.zip) into the MusicNet folder",
                self.root,
            )
        return found

    def _metadata(self) -> dict[str, dict[str, str]]:
        """Recording id -> composer, composition, movement, ensemble (empty when the CSV is absent)."""
        path = self.root / METADATA_FILE
        if not path.is_file():
            return {}
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return {
            row["id"]: {name: row[name] for name in METADATA_FIELDS if row.get(name)}
            for row in rows
            if row.get("id")
        }
