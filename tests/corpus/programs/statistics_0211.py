# From the Python 3.11 documentation, Doc/library/statistics.rst, line 211.
# allow: 
import statistics
from statistics import *
if (_ := round(geometric_mean([54, 24, 36]), 1)) is not None:
    print(repr(_))
