# From the Python 3.11 documentation, Doc/library/re.rst, line 1297.
# allow: 
import re
from re import *
m = re.match('(?P<first_name>\\w+) (?P<last_name>\\w+)', 'Malcolm Reynolds')
if (_ := m.group('first_name')) is not None:
    print(repr(_))
if (_ := m.group('last_name')) is not None:
    print(repr(_))
if (_ := m.group(1)) is not None:
    print(repr(_))
if (_ := m.group(2)) is not None:
    print(repr(_))
m = re.match('(..)+', 'a1b2c3')
if (_ := m.group(1)) is not None:
    print(repr(_))
