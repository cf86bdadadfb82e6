"""Health, readiness and metrics: the probe server of the services without HTTP, and /metrics."""

from __future__ import annotations

import httpx
import msgspec

from dateline.runtime.probes import probes
from dateline.store.log import Log
from tests.e2e.processes import free_port
from tests.integration.serving import serve
from tests.readers import bearer


async def test_probe_server_answers_health_readiness_and_metrics() -> None:
    reason: list[str] = []

    async def ready() -> str | None:
        return reason[0] if reason else None

    port = free_port()
    async with probes("127.0.0.1", port, ready), httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        assert (await http.get(f"{base}/healthz")).json() == {"status": "ok"}
        assert (await http.get(f"{base}/readyz")).status_code == 200
        reason.append('Redis: "connection refused"')
        r = await http.get(f"{base}/readyz")
        assert r.status_code == 503
        assert r.json()["detail"] == "Redis: 'connection refused'"
        metrics = await http.get(f"{base}/metrics")
        assert "dateline_projected_updates_total" in metrics.text
        assert (await http.get(f"{base}/nothing")).status_code == 404


async def test_probes_are_off_without_a_port() -> None:
    async def ready() -> str | None:
        return None

    async with probes("127.0.0.1", 0, ready) as bound:
        assert bound == 0


async def test_ingest_counts_updates_by_outcome_and_times_requests(
    log: Log, redis_url: str
) -> None:
    from dateline.ingest.app import create_app  # noqa: PLC0415
    from dateline.ingest.credentials import Credentials  # noqa: PLC0415
    from dateline.store.config import Settings  # noqa: PLC0415
    from tests.factories import update  # noqa: PLC0415

    cfg = Settings(None, data_dir=None, prefix=log.keys.prefix, partitions=log.keys.partitions)  # type: ignore[arg-type]
    token = await Credentials(log.redis, log.keys.prefix).add("m", "urn:feed:test")
    body = msgspec.json.encode(update())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"}
    ops = await bearer(redis_url, log.keys.prefix)
    reader = await bearer(redis_url, log.keys.prefix, "reader")
    async with serve(create_app(cfg, redis_url)) as base, httpx.AsyncClient(base_url=base) as http:
        # /metrics for an ops reader's token only, as Prometheus sends one.
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers=headers)).status_code == 401  # a feed's
        assert (await http.get("/metrics", headers=reader)).status_code == 403
        before = _sample((await http.get("/metrics", headers=ops)).text, 'outcome="duplicate"')
        assert (await http.post("/v1/updates", content=body, headers=headers)).status_code == 202
        assert (await http.post("/v1/updates", content=body, headers=headers)).status_code == 200
        text = (await http.get("/metrics", headers=ops)).text
        assert _sample(text, 'outcome="duplicate"') == before + 1
        assert (
            'dateline_http_request_seconds_count{route="/v1/updates",service="ingest",status="202"}'
            in text
        )
        assert (await http.get("/readyz")).json() == {"status": "ready"}


def _sample(text: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith("dateline_updates_total{") and label in line and "ingest" in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
