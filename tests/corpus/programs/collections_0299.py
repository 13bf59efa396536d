# From the Python 3.11 documentation, Doc/library/collections.rst, line 299.
# allow: 
import collections
from collections import *
if (_ := Counter('abracadabra').most_common(3)) is not None:
    print(repr(_))
