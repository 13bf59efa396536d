# From the Python 3.11 documentation, Doc/library/re.rst, line 928.
# allow: 
import re
from re import *
if (_ := re.findall('\\bf[a-z]*', 'which foot or hand fell fastest')) is not None:
    print(repr(_))
if (_ := re.findall('(\\w+)=(\\d+)', 'set width=20 and height=10')) is not None:
    print(repr(_))
