# From the Python 3.11 documentation, Doc/library/re.rst, line 1322.
# allow: 
import re
from re import *
m = re.match('(\\w+) (\\w+)', 'Isaac Newton, physicist')
if (_ := m[0]) is not None:
    print(repr(_))
if (_ := m[1]) is not None:
    print(repr(_))
if (_ := m[2]) is not None:
    print(repr(_))
m = re.match('(?P<first_name>\\w+) (?P<last_name>\\w+)', 'Isaac Newton')
if (_ := m['first_name']) is not None:
    print(repr(_))
if (_ := m['last_name']) is not None:
    print(repr(_))
