# From the Python 3.11 documentation, Doc/library/typing.rst, line 409.
# allow: typing
from typing import Generic, ParamSpec, TypeVar
T = TypeVar('T')
P = ParamSpec('P')
class Z(Generic[T, P]):
    ...
if (_ := Z[int, [dict, float]]) is not None:
    print(repr(_))
