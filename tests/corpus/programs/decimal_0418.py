# From the Python 3.11 documentation, Doc/library/decimal.rst, line 418.
# allow: decimal
import decimal
from decimal import *
if (_ := (-7 % 4)) is not None:
    print(repr(_))
if (_ := (Decimal(-7) % Decimal(4))) is not None:
    print(repr(_))
if (_ := (-7 // 4)) is not None:
    print(repr(_))
if (_ := (Decimal(-7) // Decimal(4))) is not None:
    print(repr(_))
