"""`umt eval a2i` as a script: `python eval/a2i.py --checkpoint MODEL --data MANIFEST [...]` (every
option of `umt eval`; see `python eval/a2i.py --help` and :mod:`umt.evaluate`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umt.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "a2i", *sys.argv[1:]]))
