"""``python -m fastvae``: the same as the ``fastvae`` command."""

import sys

from fastvae.cli import main

sys.exit(main())
