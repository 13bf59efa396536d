# From the Python 3.11 documentation, Doc/library/re.rst, line 1170.
# allow: 
import re
from re import *
pattern = re.compile('o[gh]')
if (_ := pattern.fullmatch('dog')) is not None:
    print(repr(_))
if (_ := pattern.fullmatch('ogre')) is not None:
    print(repr(_))
if (_ := pattern.fullmatch('doggie', 1, 3)) is not None:
    print(repr(_))
