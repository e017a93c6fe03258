"""``python -m miniff``: see :mod:`miniff.cli`."""

import sys

from miniff.cli import main

if __name__ == "__main__":
    sys.exit(main())
