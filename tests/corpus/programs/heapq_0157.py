# From the Python 3.11 documentation, Doc/library/heapq.rst, line 157.
# allow: heapq
import heapq
from heapq import *
h = []
if (_ := heappush(h, (5, 'write code'))) is not None:
    print(repr(_))
if (_ := heappush(h, (7, 'release product'))) is not None:
    print(repr(_))
if (_ := heappush(h, (1, 'write spec'))) is not None:
    print(repr(_))
if (_ := heappush(h, (3, 'create tests'))) is not None:
    print(repr(_))
if (_ := heappop(h)) is not None:
    print(repr(_))
