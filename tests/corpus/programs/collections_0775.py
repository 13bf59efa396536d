# From the Python 3.11 documentation, Doc/library/collections.rst, line 775.
# allow: 
import collections
from collections import *
s = [('yellow', 1), ('blue', 2), ('yellow', 3), ('blue', 4), ('red', 1)]
d = defaultdict(list)
for k, v in s:
    d[k].append(v)
if (_ := sorted(d.items())) is not None:
    print(repr(_))
