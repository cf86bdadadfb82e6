"""The delivery service's pure parts: the request, its signature, where it may go, when it
is tried again, and which subscription wants which update."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import msgspec
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from dateline.deliver.fanout import route
from dateline.deliver.targets import (
    Refused,
    TargetRefused,
    allowed,
    check_url,
    guarded_socket,
    refusal,
)
from dateline.deliver.webhook import Signer, message_id, percent_encode, request
from dateline.deliver.worker import RetryPolicy
from dateline.kit import DatelineLog, LogEntry, _classes
from dateline.store.subscriptions import Subscription
from dateline_schemas import Update
from dateline_schemas.schedule import ScheduleRescheduled
from dateline_schemas.statement import StatementMade

RECORD = msgspec.json.encode(
    {
        "specversion": "1.0",
        "id": "wire-a-0007",
        "source": "urn:feed:wire-a",
        "type": "dateline.schedule.rescheduled",
        "subject": "hanoi-summit-2019",
        "time": "2019-02-28T11:00:00+07:00",
        "data": {"item": "press-conference", "shift": "-PT2H", "reason": "Trump: «plus tôt» 100%"},
        "version": 7,
        "position": "1:1700000000000-3",
        "recordedtime": "2019-02-28T04:01:02.003Z",
        "editor": True,
    }
)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_structured_mode_sends_the_stored_record_whole() -> None:
    headers, body = request(RECORD, "structured")
    assert body == RECORD
    assert dict(headers)["content-type"].startswith("application/cloudevents+json")
    event = from_structured(HTTPMessage(dict(headers), body), JSONFormat())
    assert event.get_id() == "wire-a-0007"
    assert event.get_extension("version") == 7


def test_binary_mode_puts_attributes_in_headers_and_data_in_the_body() -> None:
    headers, body = request(RECORD, "binary")
    found = dict(headers)
    assert msgspec.json.decode(body) == msgspec.json.decode(RECORD)["data"]
    assert found["content-type"] == "application/json"
    assert found["ce-type"] == "dateline.schedule.rescheduled"
    assert found["ce-version"] == "7"
    assert found["ce-editor"] == "true"
    assert "ce-data" not in found
    # The CloudEvents SDK, which nobody here wrote, reads it back.
    event = from_binary(HTTPMessage(dict(headers), body), JSONFormat())
    assert event.get_subject() == "hanoi-summit-2019"
    assert event.get_extension("position") == "1:1700000000000-3"
    data = event.get_data()
    assert isinstance(data, dict) and data["shift"] == "-PT2H"


def test_header_values_are_percent_encoded_as_the_http_binding_says() -> None:
    assert percent_encode("urn:feed:wire-a") == "urn:feed:wire-a"
    assert percent_encode("a b") == "a%20b"
    assert percent_encode('say "no" 100%') == "say%20%22no%22%20100%25"
    assert percent_encode("Hà Nội") == "H%C3%A0%20N%E1%BB%99i"


def test_the_signature_is_standard_webhooks() -> None:
    now = time.time()
    body = b'{"a": 1}'
    headers = dict(Signer(SECRET).headers("dl_1_5-0", body, now))
    assert headers["webhook-id"] == "dl_1_5-0"
    assert headers["webhook-timestamp"] == str(int(now))
    # The reference package verifies it; a changed body or id does not verify.
    Webhook(SECRET).verify(body, headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(b'{"a": 2}', headers)


def test_a_message_id_stays_the_same_for_every_attempt() -> None:
    assert (
        message_id("1:1700000000000-3") == message_id("1:1700000000000-3") == "dl_1_1700000000000-3"
    )
    assert message_id("1:1700000000000-3") != message_id("2:1700000000000-3")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - the address under test
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not globally routable"),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_addresses_inside_the_network_are_refused(address: str, why: str | None) -> None:
    found = refusal(ipaddress.ip_address(address))
    assert (found is None) if why is None else (found is not None and why in found)


@pytest.mark.parametrize(
    ("family", "where", "why"),
    [
        (socket.AF_INET, ("127.0.0.1", 80), "loopback"),
        (socket.AF_INET, ("169.254.169.254", 80), "link-local"),
        (socket.AF_INET6, ("::ffff:10.0.0.1", 443, 0, 0), "private"),
        (socket.AF_INET6, ("fe80::1%1", 443, 0, 1), "link-local"),
        (socket.AF_INET, ("93.184.216.34", 443), None),
    ],
)
def test_the_guard_opens_sockets_to_public_addresses_only(
    family: socket.AddressFamily, where: tuple[Any, ...], why: str | None
) -> None:
    """Each address a guarded connection is about to try, as aiohttp hands it over."""
    info = (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", where)
    if why is not None:
        with pytest.raises(Refused, match=why):
            guarded_socket(info)
        return
    with guarded_socket(info) as made:  # made, not connected
        assert made.family == family


def test_a_host_with_one_private_address_is_refused_whole() -> None:
    public, private = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.1")
    assert allowed("example.org", [public]) == [public]
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.1, a private address"):
        allowed("rebind.example", [public, private])
    with pytest.raises(TargetRefused, match="no address"):
        allowed("nowhere.example", [])


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.org/", "http:// or https://"),
        ("https:///path", "no host"),
        ("https://user:pw@example.org/", "credentials"),
        ("https://example.org/#x", "fragment"),
        ("https://example.org:99999/", "url"),
    ],
)
def test_urls_a_subscription_may_not_use(url: str, problem: str) -> None:
    with pytest.raises(TargetRefused, match=problem):
        check_url(url)


def test_urls_a_subscription_may_use() -> None:
    assert check_url("https://cms.example.org/hooks/dateline") == ("cms.example.org", 443)
    assert check_url("http://alerts.example.org:8080/x?y=1") == ("alerts.example.org", 8080)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(first_s=1.0, max_backoff_s=60.0)
    assert [policy.delay(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [policy.delay(n, lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert policy.delay(30, lambda: 1.0) == 60.0
    assert policy.delay(10_000, lambda: 0.0) == 30.0  # no overflow, however many attempts


def _sub(**kw: object) -> Subscription:
    return Subscription("s", "https://example.org/", **kw)  # type: ignore[arg-type]


def test_a_subscription_wants_its_stories_types_and_only_what_came_after_it() -> None:
    sub = _sub(story_prefixes=["hanoi-"], types=["dateline.schedule.rescheduled"])
    assert sub.wants(0, "5-0", "hanoi-summit-2019", "dateline.schedule.rescheduled")
    assert not sub.wants(0, "5-0", "cohen-hearing", "dateline.schedule.rescheduled")
    assert not sub.wants(0, "5-0", "hanoi-summit-2019", "dateline.statement.made")
    later = _sub(starts={"0": "1700-5"})
    assert not later.wants(0, "1700-5", "x", "t")
    assert not later.wants(0, "999-9", "x", "t")
    assert later.wants(0, "1700-6", "x", "t")
    assert later.wants(0, "1701-0", "x", "t")
    assert later.wants(1, "1-0", "x", "t")  # partition 1 was empty when it was added


def test_route_puts_each_update_in_every_outbox_that_wants_it() -> None:
    entries = [LogEntry(1, "5-0", RECORD), LogEntry(1, "5-1", RECORD.replace(b"hanoi-", b"cohen-"))]
    subs = [_sub(), msgspec.structs.replace(_sub(story_prefixes=["hanoi-"]), name="h")]
    routed = route(subs, entries)
    assert [(sub.name, [(e, f[b"position"]) for e, f in got]) for sub, got in routed] == [
        ("s", [("5-0", b"1:5-0"), ("5-1", b"1:5-1")]),
        ("h", [("5-0", b"1:5-0")]),
    ]
    first = routed[0][1][0][1]
    assert first[b"record"] == RECORD
    assert first[b"story"] == b"hanoi-summit-2019"
    assert (
        route([msgspec.structs.replace(_sub(story_prefixes=["nobody-"]), name="n")], entries) == []
    )


def test_kit_handlers_are_chosen_by_their_annotation() -> None:
    assert _classes(ScheduleRescheduled) == (ScheduleRescheduled,)
    assert _classes(ScheduleRescheduled | StatementMade) == (ScheduleRescheduled, StatementMade)
    assert len(_classes(Update)) > 10  # the whole union
    kit = DatelineLog("redis://127.0.0.1:1", group="g")  # nothing connects before start

    @kit.handler
    async def moved(update: ScheduleRescheduled | StatementMade) -> None:
        return None

    assert kit.handlers == {ScheduleRescheduled: [moved], StatementMade: [moved]}
    with pytest.raises(TypeError, match="annotate"):

        @kit.handler
        async def bare(update) -> None:  # type: ignore[no-untyped-def]
            return None
