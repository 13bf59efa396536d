# From the Python 3.11 documentation, Doc/library/datetime.rst, line 1007.
# allow: 
from datetime import datetime
if (_ := datetime.fromisoformat('2011-11-04')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('20111104')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('2011-11-04T00:05:23')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('2011-11-04T00:05:23Z')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('20111104T000523')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('2011-W01-2T00:05:23.283')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('2011-11-04 00:05:23.283')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('2011-11-04 00:05:23.283+00:00')) is not None:
    print(repr(_))
if (_ := datetime.fromisoformat('2011-11-04T00:05:23+04:00')) is not None:
    print(repr(_))
