# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 713.
# allow: hashlib
from hashlib import blake2b
FANOUT = 2
DEPTH = 2
LEAF_SIZE = 4096
INNER_SIZE = 64
buf = bytearray(6000)
h00 = blake2b(buf[0:LEAF_SIZE], fanout=FANOUT, depth=DEPTH, leaf_size=LEAF_SIZE, inner_size=INNER_SIZE, node_offset=0, node_depth=0, last_node=False)
h01 = blake2b(buf[LEAF_SIZE:], fanout=FANOUT, depth=DEPTH, leaf_size=LEAF_SIZE, inner_size=INNER_SIZE, node_offset=1, node_depth=0, last_node=True)
h10 = blake2b(digest_size=32, fanout=FANOUT, depth=DEPTH, leaf_size=LEAF_SIZE, inner_size=INNER_SIZE, node_offset=0, node_depth=1, last_node=True)
if (_ := h10.update(h00.digest())) is not None:
    print(repr(_))
if (_ := h10.update(h01.digest())) is not None:
    print(repr(_))
if (_ := h10.hexdigest()) is not None:
    print(repr(_))
