"""Short full garbage collections in long-running services."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Take what is alive once a service has started out of the collector's view.

    Modules, classes and the app live as long as the process, so a collection never
    frees them, yet every full collection walked them all: about 10 ms of CPU a pass,
    stretched to 30 to 120 ms while five processes share two cores, with the event
    loop stopped throughout. Under load the projector ran one every few seconds, and
    they were the p99 of the latency bench (`bench/readside.py`). What is made later
    is collected as before.
    """
    gc.collect()
    gc.freeze()
