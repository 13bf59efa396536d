# From the Python 3.11 documentation, Doc/library/collections.rst, line 320.
# allow: 
import collections
from collections import *
c = Counter(a=10, b=5, c=0)
if (_ := c.total()) is not None:
    print(repr(_))
