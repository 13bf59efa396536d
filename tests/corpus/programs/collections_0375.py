# From the Python 3.11 documentation, Doc/library/collections.rst, line 375.
# allow: 
import collections
from collections import *
c = Counter(a=3, b=1)
d = Counter(a=1, b=2)
if (_ := (c + d)) is not None:
    print(repr(_))
if (_ := (c - d)) is not None:
    print(repr(_))
if (_ := (c & d)) is not None:
    print(repr(_))
if (_ := (c | d)) is not None:
    print(repr(_))
if (_ := (c == d)) is not None:
    print(repr(_))
if (_ := (c <= d)) is not None:
    print(repr(_))
c = Counter(a=2, b=-4)
if (_ := (+c)) is not None:
    print(repr(_))
if (_ := (-c)) is not None:
    print(repr(_))
