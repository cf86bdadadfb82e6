"""The fault-injection harness (issue 18): real processes, faults on a schedule from a seed, and a checker."""
