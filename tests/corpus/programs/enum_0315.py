# From the Python 3.11 documentation, Doc/library/enum.rst, line 315.
# allow: enum
import enum
from enum import *
from enum import auto
class PowersOfThree(Enum):

    @staticmethod
    def _generate_next_value_(name, start, count, last_values):
        return 3 ** (count + 1)
    FIRST = auto()
    SECOND = auto()
if (_ := PowersOfThree.SECOND.value) is not None:
    print(repr(_))
