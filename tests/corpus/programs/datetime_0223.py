# From the Python 3.11 documentation, Doc/library/datetime.rst, line 223.
# allow: 
from datetime import timedelta
delta = timedelta(days=50, seconds=27, microseconds=10, milliseconds=29000, minutes=5, hours=8, weeks=2)
if (_ := delta) is not None:
    print(repr(_))
