# From the Python 3.11 documentation, Doc/library/math.rst, line 659.
# allow: 
import math
if (_ := (math.nan == math.nan)) is not None:
    print(repr(_))
if (_ := (float('nan') == float('nan'))) is not None:
    print(repr(_))
if (_ := math.isnan(math.nan)) is not None:
    print(repr(_))
if (_ := math.isnan(float('nan'))) is not None:
    print(repr(_))
