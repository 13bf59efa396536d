# From the Python 3.11 documentation, Doc/library/decimal.rst, line 215.
# allow: decimal
import decimal
from decimal import *
data = list(map(Decimal, '1.34 1.87 3.45 2.35 1.00 0.03 9.25'.split()))
if (_ := max(data)) is not None:
    print(repr(_))
if (_ := min(data)) is not None:
    print(repr(_))
if (_ := sorted(data)) is not None:
    print(repr(_))
if (_ := sum(data)) is not None:
    print(repr(_))
a, b, c = data[:3]
if (_ := str(a)) is not None:
    print(repr(_))
if (_ := float(a)) is not None:
    print(repr(_))
if (_ := round(a, 1)) is not None:
    print(repr(_))
if (_ := int(a)) is not None:
    print(repr(_))
if (_ := (a * 5)) is not None:
    print(repr(_))
if (_ := (a * b)) is not None:
    print(repr(_))
if (_ := (c % a)) is not None:
    print(repr(_))
getcontext().prec = 28
if (_ := Decimal(2).sqrt()) is not None:
    print(repr(_))
if (_ := Decimal(1).exp()) is not None:
    print(repr(_))
if (_ := Decimal('10').ln()) is not None:
    print(repr(_))
if (_ := Decimal('10').log10()) is not None:
    print(repr(_))
if (_ := Decimal('7.325').quantize(Decimal('.01'), rounding=ROUND_DOWN)) is not None:
    print(repr(_))
if (_ := Decimal('7.325').quantize(Decimal('1.'), rounding=ROUND_UP)) is not None:
    print(repr(_))
