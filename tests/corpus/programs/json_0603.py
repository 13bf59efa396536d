# From the Python 3.11 documentation, Doc/library/json.rst, line 603.
# allow: 
import json
from json import *
if (_ := json.dumps(float('-inf'))) is not None:
    print(repr(_))
if (_ := json.dumps(float('nan'))) is not None:
    print(repr(_))
if (_ := json.loads('-Infinity')) is not None:
    print(repr(_))
if (_ := json.loads('NaN')) is not None:
    print(repr(_))
