"""The delivery service: updates out to subscribers as signed CloudEvents (`dateline deliver`)."""
