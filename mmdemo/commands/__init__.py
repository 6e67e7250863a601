"""The command line: `python -m mmdemo index | list | stats | remove | prune | eval ...`."""
