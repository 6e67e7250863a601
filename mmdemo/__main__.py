"""`python -m mmdemo`: see mmdemo/cli.py."""

import sys

from mmdemo.cli import main

sys.exit(main())
