"""Prometheus metrics, one family per thing an operator asks about.

Every service is its own process, so the default registry holds one service's
metrics; the `service` label says which when they are scraped together.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

UPDATES = Counter(
    "dateline_updates",
    "Updates handled on the way in, by outcome: appended, duplicate, conflict, invalid, forbidden.",
    ["service", "outcome"],
)
REUSED_IDS = Counter(
    "dateline_reused_ids",
    "Duplicates whose content is not the original's: a source and id used again for another "
    "update, whose content the log did not take (counted in dateline_updates as duplicates).",
    ["service"],
)
PROJECTED = Counter(
    "dateline_projected_updates", "Updates the projector applied or skipped as seen."
)
PARKED = Counter(
    "dateline_parked_updates", "Updates parked in the dead letters, by consumer group.", ["group"]
)
BATCH_SECONDS = Histogram(
    "dateline_projector_batch_seconds",
    "Time to project one batch and commit it with its checkpoint (batches committed).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STATES = Counter(
    "dateline_projector_states",
    "Story states the projector's batches folded, by where each was found: warm (decoded "
    "already), packed (decoded again: past DATELINE_PROJECTOR_WARM_MB), read (from the store).",
    ["found"],
)
DROPPED = Counter(
    "dateline_projector_states_dropped",
    "Story states the projector dropped past what it keeps (DATELINE_PROJECTOR_KEEP_MB): "
    "each is read from the store again when its story next comes.",
)
GC_SECONDS = Histogram(
    "dateline_gc_pause_seconds",
    "Garbage collections, by generation: the event loop stands still meanwhile.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
HTTP_SECONDS = Histogram(
    "dateline_http_request_seconds",
    "HTTP request latency until the response starts, by route and status.",
    ["service", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
LAG_UPDATES = Gauge(
    "dateline_projection_lag_updates", "Updates in the log not yet projected.", ["partition"]
)
LAG_SECONDS = Gauge(
    "dateline_projection_lag_seconds",
    "Age of the oldest update not yet projected.",
    ["partition"],
)
PENDING = Gauge("dateline_pending_updates", "Delivered, not yet acknowledged.", ["partition"])
POLLED = Gauge(
    "dateline_partitions_polled",
    "Partitions a runner on a cluster polls because their waiter failed (0: every one it "
    "holds rings it; runtime/wakes.py), by consumer group.",
    ["group"],
)
PARKED_NOW = Gauge("dateline_parked_now", "Updates parked in the dead letters now.")
BACKUP_LAST = Gauge(
    "dateline_backup_last_timestamp_seconds",
    "When the last `dateline backup` of the log began (Unix seconds); 0: none recorded.",
)
AOF_BYTES = Gauge(
    "dateline_server_aof_bytes",
    "A primary's AOF now, and what its last rewrite left ('kind': current, rewritten).",
    ["server", "kind"],
)
AOF_REWRITING = Gauge(
    "dateline_server_aof_rewriting",
    "1 while a primary rewrites its AOF: its child takes a core and the disk.",
    ["server"],
)
AOF_WRITE_FAILED = Gauge(
    "dateline_server_aof_write_failed",
    "1 when a primary's last AOF write failed: it refuses writes until one works. Alert on it.",
    ["server"],
)
MEMORY_BYTES = Gauge(
    "dateline_server_memory_bytes",
    "A primary's memory in use, and its maxmemory ('kind': used, max; max 0: none). At its "
    "maxmemory under noeviction it refuses writes, and appends and commits wait: alert "
    "before used reaches max.",
    ["server", "kind"],
)
DISK_KNOWN = Gauge(
    "dateline_server_disk_known",
    "1 when a primary answered the last scrape's questions of its disk; 0 when it could not "
    "be asked (refused, unreachable), and its AOF series are gone until it can.",
    ["server"],
)
SERVER_REACHABLE = Gauge(
    "dateline_server_reachable",
    "1 when a primary answered the last scrape; 0 when it could not be reached (no "
    "connection, a timeout, its credentials refused): the gauges read from it are gone or "
    "NaN until it can. Alert on it.",
    ["server"],
)
FANNED_OUT = Counter(
    "dateline_fanned_out_updates", "Updates put in subscriptions' outboxes (one per subscription)."
)
DELIVERIES = Counter(
    "dateline_deliveries",
    "Delivery attempts to subscribers, by outcome: delivered, failed, parked.",
    ["subscription", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "dateline_delivery_seconds",
    "Time from sending a delivery to the subscriber's answer.",
    ["subscription"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERY_BACKLOG = Gauge(
    "dateline_delivery_backlog_updates", "Updates in a subscription's outbox.", ["subscription"]
)
DELIVERY_LAG_SECONDS = Gauge(
    "dateline_delivery_lag_seconds",
    "Age of the oldest update in a subscription's outbox.",
    ["subscription"],
)
DELIVERY_PARKED = Gauge(
    "dateline_delivery_parked_updates",
    "Updates given up on, in a subscription's dead letters.",
    ["subscription"],
)
DELIVERY_MISSED = Gauge(
    "dateline_delivery_missed_updates",
    "Updates a subscription missed because the fan-out parked them before they reached its "
    "outbox (`dateline dlq redrive STORY --group deliver` sends them).",
    ["subscription"],
)
FANOUT_PARKED = Gauge(
    "dateline_fanout_parked_updates",
    "Updates the subscriptions' fan-out parked (`dateline dlq list --group deliver`): the "
    "subscriptions that lack them get them only once they are redriven.",
)
LIVE_CLIENTS = Gauge("dateline_live_clients", "Open Server-Sent Event streams.")
LIVE_PAGES = Counter(
    "dateline_live_index_pages",
    "Pages of the live index streams: carried by the doorbell's messages (carried), or "
    "read from the log and the store (read): a stream reads when it is behind, once a "
    "poll, and when a commit carried no page (too large, an update parked, another "
    "version's). Mostly read with the read models apart means the pages are not carried.",
    ["how"],
)
KEPT_READS = Counter(
    "dateline_query_kept_reads",
    "Story and list reads of the query process: answered from what it kept (hit), or "
    "read from Redis (miss); a story's, from another request's read of it in flight "
    "(joined), or from the one begun after it, for those a commit heard since it began "
    "made wait (queued). Every commit heard drops some; a low hit rate under load "
    "is expected, one of zero means the change channel is not heard. Kind 'applied': "
    "a live index stream's page, hit when another stream's read of it was taken.",
    ["kind", "outcome"],
)
REQUESTS_WAITING = Gauge(
    "dateline_http_requests_waiting",
    "Requests waiting for a place (DATELINE_MAX_REQUESTS in progress).",
    ["service"],
)


METRICS_TYPE: str = CONTENT_TYPE_LATEST


def latest() -> bytes:
    """Every family of this process in Prometheus' text format."""
    return generate_latest()
