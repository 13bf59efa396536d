# From the Python 3.11 documentation, Doc/library/datetime.rst, line 711.
# allow: 
from datetime import date
if (_ := date(2002, 12, 4).isoformat()) is not None:
    print(repr(_))
