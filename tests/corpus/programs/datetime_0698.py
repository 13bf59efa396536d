# From the Python 3.11 documentation, Doc/library/datetime.rst, line 698.
# allow: 
from datetime import date
if (_ := date(2003, 12, 29).isocalendar()) is not None:
    print(repr(_))
if (_ := date(2004, 1, 4).isocalendar()) is not None:
    print(repr(_))
