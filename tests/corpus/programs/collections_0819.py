# From the Python 3.11 documentation, Doc/library/collections.rst, line 819.
# allow: 
import collections
from collections import *
def constant_factory(value):
    return lambda: value
d = defaultdict(constant_factory('<missing>'))
if (_ := d.update(name='John', action='ran')) is not None:
    print(repr(_))
if (_ := ('%(name)s %(action)s to %(object)s' % d)) is not None:
    print(repr(_))
s = [('red', 1), ('blue', 2), ('red', 3), ('blue', 4), ('red', 1), ('blue', 4)]
d = defaultdict(set)
for k, v in s:
    d[k].add(v)
if (_ := sorted(d.items())) is not None:
    print(repr(_))
