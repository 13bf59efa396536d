# From the Python 3.11 documentation, Doc/library/time.rst, line 545.
# allow: 
import time
if (_ := time.strptime('30 Nov 00', '%d %b %y')) is not None:
    print(repr(_))
