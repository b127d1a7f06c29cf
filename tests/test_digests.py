"""gastown.digests: the digests hashlib gives, without loading OpenSSL."""
from __future__ import annotations

import hashlib
import subprocess
import sys

from gastown import digests


def test_the_digests_are_hashlibs() -> None:
    data = b"tree 0\0" + bytes(range(256))
    assert digests.sha1(data).hexdigest() == hashlib.sha1(data).hexdigest()
    assert digests.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert digests.blake2b(data, digest_size=20).hexdigest() == \
        hashlib.blake2b(data, digest_size=20).hexdigest()


def test_importing_them_loads_no_openssl() -> None:
    code = "import sys, gastown.digests; print('_hashlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ("True" if sys.version_info >= (3, 12) else "False")
