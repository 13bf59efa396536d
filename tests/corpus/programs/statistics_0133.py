# From the Python 3.11 documentation, Doc/library/statistics.rst, line 133.
# allow: decimal fractions
import statistics
from statistics import *
if (_ := mean([1, 2, 3, 4, 4])) is not None:
    print(repr(_))
if (_ := mean([-1.0, 2.5, 3.25, 5.75])) is not None:
    print(repr(_))
from fractions import Fraction as F
if (_ := mean([F(3, 7), F(1, 21), F(5, 3), F(1, 3)])) is not None:
    print(repr(_))
from decimal import Decimal as D
if (_ := mean([D('0.5'), D('0.75'), D('0.625'), D('0.375')])) is not None:
    print(repr(_))
