"""The `dateline` command: one entry point, a subcommand per job."""

from __future__ import annotations

import click

from dateline.cli.deliver_cmd import deliver_command, subscriptions
from dateline.cli.demo import demo, up
from dateline.cli.ingest_cmd import feeds, ingest_command, validator_command
from dateline.cli.log_cmd import log_command
from dateline.cli.migrate_cmd import migrate_command
from dateline.cli.ops_cmd import dlq, replay, seal_command, status_command
from dateline.cli.projector_cmd import projector_command, story_command
from dateline.cli.publish import publish
from dateline.cli.query_cmd import query_command
from dateline.cli.readers_cmd import readers
from dateline.cli.redis_cmd import redis_command
from dateline.runtime.logs import configure


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dateline")
def cli() -> None:
    """dateline: the update log of developing news stories, on Redis Streams.

    With REDIS_URL unset, commands use an embedded Redis (Valkey) whose data lives
    in DATELINE_DATA_DIR (default .dateline/). See README.md and docs/.
    """
    configure()


cli.add_command(publish)
cli.add_command(log_command)
cli.add_command(redis_command)
cli.add_command(demo)
cli.add_command(up)
cli.add_command(projector_command)
cli.add_command(story_command)
cli.add_command(dlq)
cli.add_command(replay)
cli.add_command(status_command)
cli.add_command(seal_command)
cli.add_command(migrate_command)
cli.add_command(ingest_command)
cli.add_command(feeds)
cli.add_command(validator_command)
cli.add_command(query_command)
cli.add_command(readers)
cli.add_command(deliver_command)
cli.add_command(subscriptions)
