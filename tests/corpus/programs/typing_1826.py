# From the Python 3.11 documentation, Doc/library/typing.rst, line 1826.
# allow: typing
from typing import TypedDict
class Point2D(TypedDict):
    pass
if (_ := Point2D.__total__) is not None:
    print(repr(_))
class Point2D(TypedDict, total=False):
    pass
if (_ := Point2D.__total__) is not None:
    print(repr(_))
class Point3D(Point2D):
    pass
if (_ := Point3D.__total__) is not None:
    print(repr(_))
