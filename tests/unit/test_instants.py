"""An instant's text in the state: isoformat's, written faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from dateline.domain.instants import iso_text

minutes = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(timezones=st.none() | st.just(UTC) | minutes))
def test_an_instant_with_an_offset_of_whole_minutes_reads_as_isoformat_writes_it(
    moment: datetime,
) -> None:
    assert iso_text(moment) == moment.isoformat()


@given(st.datetimes(), st.integers(-86399, 86399))
def test_any_instant_reads_as_its_record_in_the_log_would(moment: datetime, offset: int) -> None:
    moment = moment.replace(tzinfo=timezone(timedelta(seconds=offset)))
    logged = msgspec.json.decode(msgspec.json.encode(moment), type=datetime)
    assert iso_text(moment) == iso_text(logged) == logged.isoformat()
