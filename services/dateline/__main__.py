"""`python -m dateline`: the same as the `dateline` command."""

from dateline.cli.main import cli

cli()
