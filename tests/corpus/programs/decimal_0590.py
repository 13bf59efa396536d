# From the Python 3.11 documentation, Doc/library/decimal.rst, line 590.
# allow: decimal
import decimal
from decimal import *
if (_ := Decimal.from_float(0.1)) is not None:
    print(repr(_))
if (_ := Decimal.from_float(float('nan'))) is not None:
    print(repr(_))
if (_ := Decimal.from_float(float('inf'))) is not None:
    print(repr(_))
if (_ := Decimal.from_float(float('-inf'))) is not None:
    print(repr(_))
