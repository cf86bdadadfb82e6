"""The `dateline` command finds each subcommand where its map says, and imports none
until it is asked for."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from dateline.cli.log_cmd import render
from dateline.cli.main import COMMANDS, SERVICES, cli
from tests.factories import encode, update


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_is_where_the_map_says_under_its_own_name(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_help_lists_every_subcommand_and_an_unknown_one_is_refused() -> None:
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0
    for name in COMMANDS:
        assert f"\n  {name} " in listed.output
    unknown = CliRunner().invoke(cli, ["replya"])
    assert unknown.exit_code == 2
    assert "No such command 'replya'" in unknown.output


def test_starting_the_command_imports_no_subcommand() -> None:
    """What a rebuild's worker process runs again before its first job (`spawn`)."""
    code = (
        "import sys, dateline.cli.main\n"
        "print(sorted(m for m in sys.modules if m.startswith('dateline.cli.')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "['dateline.cli.main']"


@pytest.mark.parametrize(
    "args",
    [
        ["log", "HANOI"],
        ["story", "hanoi summit"],
        ["dlq", "show", "trailing-"],
        ["dlq", "redrive", ""],
        ["dlq", "discard", "Hanoi", "--yes"],
    ],
)
def test_a_story_argument_that_is_no_story_id_is_refused_before_redis_is_asked(
    args: list[str],
) -> None:
    """Looked up, `HANOI` was said to be a story with no updates: true, and no help."""
    run = CliRunner().invoke(cli, args, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert run.exit_code == 2, run.output
    assert "Invalid value for 'STORY': expected a story id" in run.output


def test_the_unreadable_entries_story_is_one_dlq_can_show_and_discard() -> None:
    """Parked entries whose story id could not be read are filed under "" (`DeadLetters`)."""
    for args in (["dlq", "show", ""], ["dlq", "discard", "", "--yes"]):
        run = CliRunner().invoke(cli, args, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
        assert "Invalid value for 'STORY'" not in run.output, run.output
        assert run.exit_code == 1  # past the argument: port 1 answers nobody


def test_every_service_named_for_its_log_level_is_a_subcommand() -> None:
    """The services log their info lines; the other commands their warnings (a typo here
    would leave a service quiet)."""
    assert COMMANDS.keys() >= SERVICES
    assert {"projector", "query", "ingest", "validator", "deliver"} <= SERVICES
    assert not {"replay", "restore", "migrate", "backup", "dlq"} & SERVICES


def test_the_log_table_names_each_day_its_updates_were_recorded_on() -> None:
    def recorded(version: int, at: str) -> bytes:
        doc = update("dateline.statement.made", version=version, recordedtime=at)
        return encode({**doc, "position": f"0:{version}-0"})

    records = [
        recorded(1, "2019-02-27T23:59:59.500Z"),
        recorded(2, "2019-02-28T01:00:00+07:00"),  # 2019-02-27 18:00 in UTC: the same day
        recorded(3, "2019-02-28T00:00:01Z"),
        recorded(4, "2019-03-01T09:30:00Z"),
    ]
    console = Console(width=160, record=True)
    console.print(render(records, "hanoi-summit-2019"))
    text = console.export_text()
    assert "hanoi-summit-2019: 4 updates, recorded from 2019-02-27 (UTC)" in text
    lines = [line for line in text.splitlines() if "│" in line]
    cells = [[c.strip() for c in line.split("│")[1:3]] for line in lines]
    assert cells == [
        ["1", "23:59:59.500"],
        ["2", "18:00:00.000"],
        ["", "2019-02-28"],
        ["3", "00:00:01.000"],
        ["", "2019-03-01"],
        ["4", "09:30:00.000"],
    ]
