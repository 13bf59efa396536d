# From the Python 3.11 documentation, Doc/library/re.rst, line 1136.
# allow: 
import re
from re import *
pattern = re.compile('d')
if (_ := pattern.search('dog')) is not None:
    print(repr(_))
if (_ := pattern.search('dog', 1)) is not None:
    print(repr(_))
