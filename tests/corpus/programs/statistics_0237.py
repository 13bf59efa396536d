# From the Python 3.11 documentation, Doc/library/statistics.rst, line 237.
# allow: 
import statistics
from statistics import *
if (_ := harmonic_mean([40, 60])) is not None:
    print(repr(_))
if (_ := harmonic_mean([40, 60], weights=[5, 30])) is not None:
    print(repr(_))
