# From the Python 3.11 documentation, Doc/library/statistics.rst, line 171.
# allow: 
import statistics
from statistics import *
if (_ := fmean([3.5, 4.0, 5.25])) is not None:
    print(repr(_))
