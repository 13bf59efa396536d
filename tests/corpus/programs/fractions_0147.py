# From the Python 3.11 documentation, Doc/library/fractions.rst, line 147.
# allow: fractions
from fractions import Fraction
if (_ := Fraction('3.1415926535897932').limit_denominator(1000)) is not None:
    print(repr(_))
from math import pi, cos
if (_ := Fraction(cos(pi / 3))) is not None:
    print(repr(_))
if (_ := Fraction(cos(pi / 3)).limit_denominator()) is not None:
    print(repr(_))
if (_ := Fraction(1.1).limit_denominator()) is not None:
    print(repr(_))
