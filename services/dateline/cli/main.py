"""The `dateline` command: one entry point, a subcommand per job.

A subcommand's module is imported when it is asked for (to run it, or by `--help`), not
every one at each start: a command pays only for its own imports, and so does each
worker process of a rebuild, which runs this command's script again before its first
job (`multiprocessing`'s `spawn`): 0.1 s of a core a worker with every module imported.
"""

from __future__ import annotations

import importlib

import click

from dateline.runtime.logs import configure

COMMANDS = {
    "publish": ("dateline.cli.publish", "publish"),
    "log": ("dateline.cli.log_cmd", "log_command"),
    "redis": ("dateline.cli.redis_cmd", "redis_command"),
    "demo": ("dateline.cli.demo", "demo"),
    "up": ("dateline.cli.demo", "up"),
    "projector": ("dateline.cli.projector_cmd", "projector_command"),
    "story": ("dateline.cli.projector_cmd", "story_command"),
    "dlq": ("dateline.cli.ops_cmd", "dlq"),
    "replay": ("dateline.cli.ops_cmd", "replay"),
    "status": ("dateline.cli.ops_cmd", "status_command"),
    "seal": ("dateline.cli.ops_cmd", "seal_command"),
    "migrate": ("dateline.cli.migrate_cmd", "migrate_command"),
    "backup": ("dateline.cli.backup_cmd", "backup_command"),
    "restore": ("dateline.cli.backup_cmd", "restore_command"),
    "ingest": ("dateline.cli.ingest_cmd", "ingest_command"),
    "feeds": ("dateline.cli.ingest_cmd", "feeds"),
    "validator": ("dateline.cli.ingest_cmd", "validator_command"),
    "query": ("dateline.cli.query_cmd", "query_command"),
    "readers": ("dateline.cli.readers_cmd", "readers"),
    "deliver": ("dateline.cli.deliver_cmd", "deliver_command"),
    "subscriptions": ("dateline.cli.deliver_cmd", "subscriptions"),
}
"""Each subcommand's name, and where it is: its module and the name it has there."""

SERVICES = frozenset(
    {"projector", "query", "ingest", "validator", "deliver", "up", "demo", "redis"}
)
"""The subcommands that run until stopped, whose info lines are their record. The others
are an operator's errands (replay, restore, migrate...): they say what they did on
stdout, and the machinery they drive (a rebuild's catch-up taking its partitions, a read
library loaded) would only scroll their progress away, so they log warnings and worse
unless DATELINE_LOG_LEVEL asks for more."""


class _Subcommands(click.Group):
    """A group whose subcommands are imported when asked for (click's "lazily loading
    subcommands")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where
        command = getattr(importlib.import_module(module), name)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{name} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> object:
        """A subcommand; a Redis that cannot be reached, refuses the credentials, a
        command or writes is said in one line (`trouble.said`), exit status 1."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from dateline.cli.trouble import said  # noqa: PLC0415 - only when it failed

            line = said(exc)
            if line is None:
                raise
            raise click.ClickException(line) from None


@click.group(
    cls=_Subcommands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="dateline")
def cli() -> None:
    """dateline: the update log of developing news stories, on Redis Streams.

    With REDIS_URL unset, commands use an embedded Redis (Valkey) whose data lives
    in DATELINE_DATA_DIR (default .dateline/). See README.md and docs/.
    """
    errand = click.get_current_context().invoked_subcommand not in SERVICES
    configure(default="warning" if errand else "info")
