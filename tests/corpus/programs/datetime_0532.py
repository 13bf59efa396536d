# From the Python 3.11 documentation, Doc/library/datetime.rst, line 532.
# allow: 
from datetime import date
if (_ := date.fromisoformat('2019-12-04')) is not None:
    print(repr(_))
if (_ := date.fromisoformat('20191204')) is not None:
    print(repr(_))
if (_ := date.fromisoformat('2021-W01-1')) is not None:
    print(repr(_))
