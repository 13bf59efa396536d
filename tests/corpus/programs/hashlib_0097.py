# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 97.
# allow: hashlib
import hashlib
m = hashlib.sha256()
if (_ := m.update(b'Nobody inspects')) is not None:
    print(repr(_))
if (_ := m.update(b' the spammish repetition')) is not None:
    print(repr(_))
if (_ := m.digest()) is not None:
    print(repr(_))
if (_ := m.hexdigest()) is not None:
    print(repr(_))
if (_ := hashlib.sha256(b'Nobody inspects the spammish repetition').hexdigest()) is not None:
    print(repr(_))
