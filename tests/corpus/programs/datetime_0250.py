# From the Python 3.11 documentation, Doc/library/datetime.rst, line 250.
# allow: 
from datetime import timedelta
d = timedelta(microseconds=-1)
if (_ := (d.days, d.seconds, d.microseconds)) is not None:
    print(repr(_))
