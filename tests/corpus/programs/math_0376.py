# From the Python 3.11 documentation, Doc/library/math.rst, line 376.
# allow: 
from math import exp, expm1
if (_ := (exp(1e-05) - 1)) is not None:
    print(repr(_))
if (_ := expm1(1e-05)) is not None:
    print(repr(_))
