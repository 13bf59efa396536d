# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 121.
# allow: hashlib
import hashlib
from hashlib import *
h = hashlib.new('sha256')
if (_ := h.update(b'Nobody inspects the spammish repetition')) is not None:
    print(repr(_))
if (_ := h.hexdigest()) is not None:
    print(repr(_))
