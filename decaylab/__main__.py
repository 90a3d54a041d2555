"""``python -m decaylab ...``: the ``decaylab`` command (for an environment where the package is on
``PYTHONPATH`` but its console script is not installed)."""

import sys

from decaylab.cli import main

sys.exit(main())
