"""The hash functions gastown uses (git object ids, fingerprints, cache keys): CPython's own
implementations where the interpreter has them, not hashlib's, which loads OpenSSL's libcrypto
for them (2 ms of every command's start here, 9 ms when the library has left the page cache).
The digests are the same; an interpreter without these modules gets hashlib's."""
from __future__ import annotations

try:
    from _blake2 import blake2b
    from _sha1 import sha1
    from _sha256 import sha256
except ImportError:  # not CPython 3.11 (3.12 renamed _sha256), or built without them
    from hashlib import blake2b, sha1, sha256

__all__ = ["blake2b", "sha1", "sha256"]
