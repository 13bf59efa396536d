# From the Python 3.11 documentation, Doc/library/decimal.rst, line 606.
# allow: decimal
import decimal
from decimal import *
if (_ := Decimal(2).fma(3, 5)) is not None:
    print(repr(_))
