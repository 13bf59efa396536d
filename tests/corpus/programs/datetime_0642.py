# From the Python 3.11 documentation, Doc/library/datetime.rst, line 642.
# allow: 
from datetime import date
d = date(2002, 12, 31)
if (_ := d.replace(day=26)) is not None:
    print(repr(_))
