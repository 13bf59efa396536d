# From the Python 3.11 documentation, Doc/library/decimal.rst, line 465.
# allow: decimal
import decimal
from decimal import *
if (_ := Decimal('-3.14').as_integer_ratio()) is not None:
    print(repr(_))
