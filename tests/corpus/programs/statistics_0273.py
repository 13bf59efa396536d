# From the Python 3.11 documentation, Doc/library/statistics.rst, line 273.
# allow: 
import statistics
from statistics import *
if (_ := median([1, 3, 5])) is not None:
    print(repr(_))
if (_ := median([1, 3, 5, 7])) is not None:
    print(repr(_))
