# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 517.
# allow: hashlib
from hashlib import blake2b
h = blake2b(digest_size=20)
if (_ := h.update(b'Replacing SHA1 with the more secure function')) is not None:
    print(repr(_))
if (_ := h.hexdigest()) is not None:
    print(repr(_))
if (_ := h.digest_size) is not None:
    print(repr(_))
if (_ := len(h.digest())) is not None:
    print(repr(_))
from hashlib import blake2b, blake2s
if (_ := blake2b(digest_size=10).hexdigest()) is not None:
    print(repr(_))
if (_ := blake2b(digest_size=11).hexdigest()) is not None:
    print(repr(_))
if (_ := blake2s(digest_size=10).hexdigest()) is not None:
    print(repr(_))
if (_ := blake2s(digest_size=11).hexdigest()) is not None:
    print(repr(_))
