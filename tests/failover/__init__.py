"""Failovers on a real local cluster (issue 16): faults to a shard while feeds publish."""
