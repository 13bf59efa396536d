# From the Python 3.11 documentation, Doc/library/fractions.rst, line 167.
# allow: fractions
import fractions
from fractions import *
from math import floor
if (_ := floor(Fraction(355, 113))) is not None:
    print(repr(_))
