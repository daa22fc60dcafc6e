"""Translate files with a trained model: ``python infer.py --checkpoint DIR --task omr page.png -o out``.

The same command as ``umt translate`` (see ``umt translate --help``).
"""

import sys

from umt.cli.translate import main

if __name__ == "__main__":
    sys.exit(main())
