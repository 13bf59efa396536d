# From the Python 3.11 documentation, Doc/library/struct.rst, line 413.
# allow: struct
import struct
from struct import *
if (_ := pack('@ci', b'#', 303240213)) is not None:
    print(repr(_))
if (_ := pack('@ic', 303240213, b'#')) is not None:
    print(repr(_))
if (_ := calcsize('@ci')) is not None:
    print(repr(_))
if (_ := calcsize('@ic')) is not None:
    print(repr(_))
if (_ := pack('@llh0l', 1, 2, 3)) is not None:
    print(repr(_))
