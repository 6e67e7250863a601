"""`python -m mmdemo`: see mmdemo/commands/cli.py."""

import logging
import os
import sys

from mmdemo.commands.cli import main

code = main()
# Exit without finalising torch and open_clip's modules (a second on 2 cores, after the work is
# done): every gallery and cache write is committed by then (SQLite in autocommit, FAISS files
# renamed into place), so only output buffers are left to flush.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
