"""``python -m pytest_memsyscalls``: see cli.py."""

import sys

from .cli.main import main

sys.exit(main())
