# From the Python 3.11 documentation, Doc/library/collections.rst, line 105.
# allow: 
import collections
from collections import *
baseline = {'music': 'bach', 'art': 'rembrandt'}
adjustments = {'art': 'van gogh', 'opera': 'carmen'}
if (_ := list(ChainMap(adjustments, baseline))) is not None:
    print(repr(_))
combined = baseline.copy()
if (_ := combined.update(adjustments)) is not None:
    print(repr(_))
if (_ := list(combined)) is not None:
    print(repr(_))
