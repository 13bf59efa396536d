# From the Python 3.11 documentation, Doc/library/collections.rst, line 288.
# allow: 
import collections
from collections import *
c = Counter(a=4, b=2, c=0, d=-2)
if (_ := sorted(c.elements())) is not None:
    print(repr(_))
