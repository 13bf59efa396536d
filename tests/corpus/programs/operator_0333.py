# From the Python 3.11 documentation, Doc/library/operator.rst, line 333.
# allow: operator
import operator
from operator import *
if (_ := itemgetter(1)('ABCDEFG')) is not None:
    print(repr(_))
if (_ := itemgetter(1, 3, 5)('ABCDEFG')) is not None:
    print(repr(_))
if (_ := itemgetter(slice(2, None))('ABCDEFG')) is not None:
    print(repr(_))
soldier = dict(rank='captain', name='dotterbart')
if (_ := itemgetter('rank')(soldier)) is not None:
    print(repr(_))
inventory = [('apple', 3), ('banana', 2), ('pear', 5), ('orange', 1)]
getcount = itemgetter(1)
if (_ := list(map(getcount, inventory))) is not None:
    print(repr(_))
if (_ := sorted(inventory, key=getcount)) is not None:
    print(repr(_))
