# From the Python 3.11 documentation, Doc/library/functools.rst, line 337.
# allow: functools
from functools import partial
basetwo = partial(int, base=2)
basetwo.__doc__ = 'Convert base 2 string to an int.'
if (_ := basetwo('10010')) is not None:
    print(repr(_))
