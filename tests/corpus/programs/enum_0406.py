# From the Python 3.11 documentation, Doc/library/enum.rst, line 406.
# allow: enum
from enum import IntEnum
class Numbers(IntEnum):
    ONE = 1
    TWO = 2
    THREE = 3
if (_ := Numbers.THREE) is not None:
    print(repr(_))
if (_ := (Numbers.ONE + Numbers.TWO)) is not None:
    print(repr(_))
if (_ := (Numbers.THREE + 5)) is not None:
    print(repr(_))
if (_ := (Numbers.THREE == 3)) is not None:
    print(repr(_))
