"""``python -m mediscope``: the command line."""

import sys

from mediscope.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
