"""``python -m pytest_memsyscalls``: see cli.py."""

import sys

from .cli import main

sys.exit(main())
