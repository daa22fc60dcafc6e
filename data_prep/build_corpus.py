"""Build the four-modality training corpus (MusicXML, LMX, PNG, MIDI, WAV) from music21's scores
and procedurally generated piano pieces. Same options as ``umt corpus build``:

    python data_prep/build_corpus.py --out data/corpus --procedural 200 --workers 8
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umt.cli import main

if __name__ == "__main__":
    sys.exit(main(["corpus", "build", *sys.argv[1:]]))
