"""Convert one of the paper's data sets from its published layout. Same arguments as
``umt data prepare``:

    python data_prep/prepare.py maestro --root downloads/maestro-v3.0.0 --out data/maestro --workers 2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from umt.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "prepare", *sys.argv[1:]]))
