# From the Python 3.11 documentation, Doc/library/statistics.rst, line 339.
# allow: 
import statistics
from statistics import *
if (_ := median_grouped([52, 52, 53, 54])) is not None:
    print(repr(_))
