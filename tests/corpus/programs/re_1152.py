# From the Python 3.11 documentation, Doc/library/re.rst, line 1152.
# allow: 
import re
from re import *
pattern = re.compile('o')
if (_ := pattern.match('dog')) is not None:
    print(repr(_))
if (_ := pattern.match('dog', 1)) is not None:
    print(repr(_))
