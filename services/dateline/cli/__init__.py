"""The `dateline` command."""
