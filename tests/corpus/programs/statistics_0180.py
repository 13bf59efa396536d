# From the Python 3.11 documentation, Doc/library/statistics.rst, line 180.
# allow: 
import statistics
from statistics import *
grades = [85, 92, 83, 91]
weights = [0.2, 0.2, 0.3, 0.3]
if (_ := fmean(grades, weights)) is not None:
    print(repr(_))
