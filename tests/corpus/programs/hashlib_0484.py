# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 484.
# allow: hashlib
from hashlib import blake2b
h = blake2b()
if (_ := h.update(b'Hello world')) is not None:
    print(repr(_))
if (_ := h.hexdigest()) is not None:
    print(repr(_))
from hashlib import blake2b
if (_ := blake2b(b'Hello world').hexdigest()) is not None:
    print(repr(_))
from hashlib import blake2b
items = [b'Hello', b' ', b'world']
h = blake2b()
for item in items:
    h.update(item)
if (_ := h.hexdigest()) is not None:
    print(repr(_))
