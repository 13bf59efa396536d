# From the Python 3.11 documentation, Doc/library/enum.rst, line 335.
# allow: enum
import enum
from enum import *
from enum import StrEnum
class Build(StrEnum):
    DEBUG = auto()
    OPTIMIZED = auto()

    @classmethod
    def _missing_(cls, value):
        value = value.lower()
        for member in cls:
            if member.value == value:
                return member
        return None
if (_ := Build.DEBUG.value) is not None:
    print(repr(_))
if (_ := Build('deBUG')) is not None:
    print(repr(_))
class OtherStyle(Enum):
    ALTERNATE = auto()
    OTHER = auto()
    SOMETHING_ELSE = auto()

    def __repr__(self):
        cls_name = self.__class__.__name__
        return f'{cls_name}.{self.name}'
if (_ := (OtherStyle.ALTERNATE, str(OtherStyle.ALTERNATE), f'{OtherStyle.ALTERNATE}')) is not None:
    print(repr(_))
class OtherStyle(Enum):
    ALTERNATE = auto()
    OTHER = auto()
    SOMETHING_ELSE = auto()

    def __str__(self):
        return f'{self.name}'
if (_ := (OtherStyle.ALTERNATE, str(OtherStyle.ALTERNATE), f'{OtherStyle.ALTERNATE}')) is not None:
    print(repr(_))
class OtherStyle(Enum):
    ALTERNATE = auto()
    OTHER = auto()
    SOMETHING_ELSE = auto()

    def __format__(self, spec):
        return f'{self.name}'
if (_ := (OtherStyle.ALTERNATE, str(OtherStyle.ALTERNATE), f'{OtherStyle.ALTERNATE}')) is not None:
    print(repr(_))
