# From the Python 3.11 documentation, Doc/library/fractions.rst, line 52.
# allow: decimal fractions
from fractions import Fraction
if (_ := Fraction(16, -10)) is not None:
    print(repr(_))
if (_ := Fraction(123)) is not None:
    print(repr(_))
if (_ := Fraction()) is not None:
    print(repr(_))
if (_ := Fraction('3/7')) is not None:
    print(repr(_))
if (_ := Fraction(' -3/7 ')) is not None:
    print(repr(_))
if (_ := Fraction('1.414213 \t\n')) is not None:
    print(repr(_))
if (_ := Fraction('-.125')) is not None:
    print(repr(_))
if (_ := Fraction('7e-6')) is not None:
    print(repr(_))
if (_ := Fraction(2.25)) is not None:
    print(repr(_))
if (_ := Fraction(1.1)) is not None:
    print(repr(_))
from decimal import Decimal
if (_ := Fraction(Decimal('1.1'))) is not None:
    print(repr(_))
