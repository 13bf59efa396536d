# From the Python 3.11 documentation, Doc/library/typing.rst, line 1856.
# allow: typing
import typing
from typing import *
class Point2D(TypedDict, total=False):
    x: int
    y: int
class Point3D(Point2D):
    z: int
if (_ := (Point3D.__required_keys__ == frozenset({'z'}))) is not None:
    print(repr(_))
if (_ := (Point3D.__optional_keys__ == frozenset({'x', 'y'}))) is not None:
    print(repr(_))
