# From the Python 3.11 documentation, Doc/library/json.rst, line 626.
# allow: 
import json
from json import *
weird_json = '{"x": 1, "x": 2, "x": 3}'
if (_ := json.loads(weird_json)) is not None:
    print(repr(_))
