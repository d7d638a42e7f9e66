"""``python -m adlib ...``: the same as the ``adlib`` command."""

import sys

from adlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
