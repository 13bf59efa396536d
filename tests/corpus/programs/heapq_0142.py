# From the Python 3.11 documentation, Doc/library/heapq.rst, line 142.
# allow: heapq
import heapq
from heapq import *
def heapsort(iterable):
    h = []
    for value in iterable:
        heappush(h, value)
    return [heappop(h) for i in range(len(h))]
if (_ := heapsort([1, 3, 5, 7, 9, 2, 4, 6, 8, 0])) is not None:
    print(repr(_))
