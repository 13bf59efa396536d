# From the Python 3.11 documentation, Doc/library/decimal.rst, line 131.
# allow: decimal
from decimal import *
if (_ := getcontext()) is not None:
    print(repr(_))
getcontext().prec = 7
