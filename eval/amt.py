"""`umt eval amt` as a script: `python eval/amt.py --checkpoint MODEL --data MANIFEST [...]` (every
option of `umt eval`; see `python eval/amt.py --help` and :mod:`umt.evaluate`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umt.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", "amt", *sys.argv[1:]]))
