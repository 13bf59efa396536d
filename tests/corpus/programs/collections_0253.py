# From the Python 3.11 documentation, Doc/library/collections.rst, line 253.
# allow: 
import collections
from collections import *
c = Counter()
c = Counter('gallahad')
c = Counter({'red': 4, 'blue': 2})
c = Counter(cats=4, dogs=8)
c = Counter(['eggs', 'ham'])
if (_ := c['bacon']) is not None:
    print(repr(_))
c['sausage'] = 0
del c['sausage']
