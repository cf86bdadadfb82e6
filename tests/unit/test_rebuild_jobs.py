"""How a rebuild in worker processes splits its stories into jobs."""

from __future__ import annotations

import pytest

from dateline.projector.replay import JOBS_A_PROCESS, MOST_A_JOB, Workers

URL = "redis://127.0.0.1:1"  # never connected to: the sizes are arithmetic


@pytest.mark.parametrize(
    ("stories", "processes", "size"),
    [
        (10_000, 2, 1_000),  # the bench's rebuild: 10 jobs, 5 a worker
        (1_000_000, 2, MOST_A_JOB),
        (3_000, 2, 375),
        (10, 2, 200),  # one chunk, however few
        (10_000, 16, 200),
    ],
)
def test_jobs_are_a_chunk_at_least_and_a_thousand_stories_at_most(
    stories: int, processes: int, size: int
) -> None:
    assert Workers(URL, processes).job_size(stories, 200) == size


@pytest.mark.parametrize("stories", [1_600, 1_700, 3_000, 7_999, 8_000, 9_999])
def test_each_process_gets_several_jobs_when_there_are_stories_for_them(stories: int) -> None:
    size = Workers(URL, 2).job_size(stories, 200)
    assert -(-stories // size) >= 2 * JOBS_A_PROCESS


def test_a_size_given_is_kept() -> None:
    assert Workers(URL, 2, stories_a_job=7).job_size(10_000, 200) == 7
