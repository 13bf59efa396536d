# From the Python 3.11 documentation, Doc/library/struct.rst, line 506.
# allow: struct
import struct
from struct import *
if (_ := calcsize('<qh6xq')) is not None:
    print(repr(_))
if (_ := (pack('<qh6xq', 1, 2, 3) == pack('@lhl', 1, 2, 3))) is not None:
    print(repr(_))
if (_ := calcsize('@llh')) is not None:
    print(repr(_))
if (_ := (pack('@llh', 1, 2, 3) == pack('<qqh', 1, 2, 3))) is not None:
    print(repr(_))
if (_ := calcsize('<qqh6x')) is not None:
    print(repr(_))
if (_ := calcsize('@llh0l')) is not None:
    print(repr(_))
if (_ := (pack('@llh0l', 1, 2, 3) == pack('<qqh6x', 1, 2, 3))) is not None:
    print(repr(_))
if (_ := calcsize('<qqh6x')) is not None:
    print(repr(_))
if (_ := calcsize('@llh0l')) is not None:
    print(repr(_))
if (_ := (pack('@llh0l', 1, 2, 3) == pack('<qqh6x', 1, 2, 3))) is not None:
    print(repr(_))
