# From the Python 3.11 documentation, Doc/library/enum.rst, line 466.
# allow: enum
from enum import Flag, auto
class Color(Flag):
    RED = auto()
    GREEN = auto()
    BLUE = auto()
purple = Color.RED | Color.BLUE
white = Color.RED | Color.GREEN | Color.BLUE
if (_ := (Color.GREEN in purple)) is not None:
    print(repr(_))
if (_ := (Color.GREEN in white)) is not None:
    print(repr(_))
if (_ := (purple in white)) is not None:
    print(repr(_))
if (_ := (white in purple)) is not None:
    print(repr(_))
if (_ := list(Color.RED)) is not None:
    print(repr(_))
if (_ := list(purple)) is not None:
    print(repr(_))
