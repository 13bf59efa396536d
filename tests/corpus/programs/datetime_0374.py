# From the Python 3.11 documentation, Doc/library/datetime.rst, line 374.
# allow: 
import datetime
from datetime import *
if (_ := timedelta(hours=-5)) is not None:
    print(repr(_))
if (_ := print(_)) is not None:
    print(repr(_))
