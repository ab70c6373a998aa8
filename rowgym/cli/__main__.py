"""``python -m rowgym.cli``: the same command line as the ``rowgym`` script."""

from rowgym.cli import app

app()
