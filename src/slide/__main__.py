"""``python -m slide`` (and ``torchrun ... -m slide train ...``): the command-line tool."""

import sys

from .cli import main

sys.exit(main())
