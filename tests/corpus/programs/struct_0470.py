# From the Python 3.11 documentation, Doc/library/struct.rst, line 470.
# allow: struct
import struct
from struct import *
if (_ := calcsize('@lhl')) is not None:
    print(repr(_))
if (_ := calcsize('@llh')) is not None:
    print(repr(_))
if (_ := calcsize('@llh0l')) is not None:
    print(repr(_))
