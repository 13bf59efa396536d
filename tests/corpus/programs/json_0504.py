# From the Python 3.11 documentation, Doc/library/json.rst, line 504.
# allow: 
import json
from json import *
if (_ := json.JSONEncoder().encode({'foo': ['bar', 'baz']})) is not None:
    print(repr(_))
