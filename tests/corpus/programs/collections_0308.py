# From the Python 3.11 documentation, Doc/library/collections.rst, line 308.
# allow: 
import collections
from collections import *
c = Counter(a=4, b=2, c=0, d=-2)
d = Counter(a=1, b=2, c=3, d=4)
if (_ := c.subtract(d)) is not None:
    print(repr(_))
if (_ := c) is not None:
    print(repr(_))
