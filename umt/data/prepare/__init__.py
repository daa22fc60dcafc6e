"""``umt data prepare NAME --root DIR --out DIR``: a paper data set, in its published layout, to a
manifest that ``umt bake`` reads unchanged (:mod:`umt.data.prepare.base` has the run loop,
one module per data set has its converter).
"""

from __future__ import annotations

from umt.data.prepare.base import Converter, PrepareSummary, WorkUnit, prepare
from umt.data.prepare.bpsd import BpsdConverter
from umt.data.prepare.maestro import MaestroConverter
from umt.data.prepare.musicnet import MusicNetConverter
from umt.data.prepare.musicscore import MusicScoreConverter
from umt.data.prepare.scores import GrandStaffConverter, OlimpicConverter
from umt.data.prepare.slakh import SlakhConverter
from umt.data.prepare.ytsv import YtsvConverter

CONVERTERS: dict[str, type[Converter]] = {
    "bpsd": BpsdConverter,
    "grandstaff": GrandStaffConverter,
    "maestro": MaestroConverter,
    "musicnet": MusicNetConverter,
    "musicscore": MusicScoreConverter,
    "olimpic": OlimpicConverter,
    "slakh": SlakhConverter,
    "ytsv": YtsvConverter,
}
"""Data set name -> converter (the names of :data:`umt.tasks.PAPER_DATASETS`)."""

__all__ = ["CONVERTERS", "Converter", "PrepareSummary", "WorkUnit", "prepare"]
