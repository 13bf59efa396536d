# From the Python 3.11 documentation, Doc/library/itertools.rst, line 611.
# allow: 
import itertools
from itertools import *
if (_ := list(map(pow, range(10), repeat(2)))) is not None:
    print(repr(_))
