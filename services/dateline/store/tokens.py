"""Bearer tokens: made from 256 random bits, shown once, kept only as a hash.

A token is 256 random bits, so a plain SHA-256 is the right hash (nothing to
brute-force; a slow KDF would only slow every request). A marker at its start
(`dl_` a feed's, `dr_` a reader's) tells a pasted token's kind at a glance and lets
a lookup skip what cannot be one.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token(marker: str) -> str:
    return marker + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
