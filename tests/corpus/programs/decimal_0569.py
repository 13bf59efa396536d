# From the Python 3.11 documentation, Doc/library/decimal.rst, line 569.
# allow: decimal
import decimal
from decimal import *
if (_ := Decimal(1).exp()) is not None:
    print(repr(_))
if (_ := Decimal(321).exp()) is not None:
    print(repr(_))
