"""``python -m fsjobs``: the same as the ``fsjobs`` command."""

import sys

from .cli import main

sys.exit(main())
