# From the Python 3.11 documentation, Doc/library/base64.rst, line 287.
# allow: base64
import base64
encoded = base64.b64encode(b'data to be encoded')
if (_ := encoded) is not None:
    print(repr(_))
data = base64.b64decode(encoded)
if (_ := data) is not None:
    print(repr(_))
