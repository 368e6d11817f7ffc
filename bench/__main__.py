"""``python -m bench``: see :mod:`bench.run`."""

import sys

from bench.run import main

if __name__ == "__main__":  # a spawned generator worker imports this module too
    sys.exit(main())
