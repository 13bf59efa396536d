# From the Python 3.11 documentation, Doc/library/statistics.rst, line 46.
# allow: 
from statistics import median
from math import isnan
from itertools import filterfalse
data = [20.7, float('NaN'), 19.2, 18.3, float('NaN'), 14.4]
if (_ := sorted(data)) is not None:
    print(repr(_))
if (_ := median(data)) is not None:
    print(repr(_))
if (_ := sum(map(isnan, data))) is not None:
    print(repr(_))
clean = list(filterfalse(isnan, data))
if (_ := clean) is not None:
    print(repr(_))
if (_ := sorted(clean)) is not None:
    print(repr(_))
if (_ := median(clean)) is not None:
    print(repr(_))
