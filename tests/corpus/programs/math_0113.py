# From the Python 3.11 documentation, Doc/library/math.rst, line 113.
# allow: 
import math
from math import *
if (_ := sum([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])) is not None:
    print(repr(_))
if (_ := fsum([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])) is not None:
    print(repr(_))
