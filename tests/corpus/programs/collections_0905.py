# From the Python 3.11 documentation, Doc/library/collections.rst, line 905.
# allow: 
import collections
from collections import *
Point = namedtuple('Point', ['x', 'y'])
p = Point(11, y=22)
if (_ := (p[0] + p[1])) is not None:
    print(repr(_))
x, y = p
if (_ := (x, y)) is not None:
    print(repr(_))
if (_ := (p.x + p.y)) is not None:
    print(repr(_))
if (_ := p) is not None:
    print(repr(_))
