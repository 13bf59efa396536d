# From the Python 3.11 documentation, Doc/library/decimal.rst, line 510.
# allow: decimal
import decimal
from decimal import *
if (_ := Decimal('12.0').compare_total(Decimal('12'))) is not None:
    print(repr(_))
