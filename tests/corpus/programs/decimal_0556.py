# From the Python 3.11 documentation, Doc/library/decimal.rst, line 556.
# allow: decimal
import decimal
from decimal import *
if (_ := Decimal('2.3').copy_sign(Decimal('-1.5'))) is not None:
    print(repr(_))
