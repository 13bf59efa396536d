# From the Python 3.11 documentation, Doc/library/statistics.rst, line 302.
# allow: 
import statistics
from statistics import *
if (_ := median_low([1, 3, 5])) is not None:
    print(repr(_))
if (_ := median_low([1, 3, 5, 7])) is not None:
    print(repr(_))
