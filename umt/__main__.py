import sys

from umt.cli import main

sys.exit(main())
