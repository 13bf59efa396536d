# From the Python 3.11 documentation, Doc/library/decimal.rst, line 65.
# allow: decimal
from decimal import *
getcontext().prec = 6
if (_ := (Decimal(1) / Decimal(7))) is not None:
    print(repr(_))
getcontext().prec = 28
if (_ := (Decimal(1) / Decimal(7))) is not None:
    print(repr(_))
