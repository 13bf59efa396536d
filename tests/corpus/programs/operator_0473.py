# From the Python 3.11 documentation, Doc/library/operator.rst, line 473.
# allow: operator
import operator
from operator import *
a = 'hello'
if (_ := iadd(a, ' world')) is not None:
    print(repr(_))
if (_ := a) is not None:
    print(repr(_))
s = ['h', 'e', 'l', 'l', 'o']
if (_ := iadd(s, [' ', 'w', 'o', 'r', 'l', 'd'])) is not None:
    print(repr(_))
if (_ := s) is not None:
    print(repr(_))
