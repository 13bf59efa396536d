# From the Python 3.11 documentation, Doc/library/re.rst, line 1280.
# allow: 
import re
from re import *
m = re.match('(\\w+) (\\w+)', 'Isaac Newton, physicist')
if (_ := m.group(0)) is not None:
    print(repr(_))
if (_ := m.group(1)) is not None:
    print(repr(_))
if (_ := m.group(2)) is not None:
    print(repr(_))
if (_ := m.group(1, 2)) is not None:
    print(repr(_))
