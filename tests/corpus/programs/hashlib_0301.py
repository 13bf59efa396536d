# From the Python 3.11 documentation, Doc/library/hashlib.rst, line 301.
# allow: hashlib
from hashlib import pbkdf2_hmac
our_app_iters = 500000
dk = pbkdf2_hmac('sha256', b'password', b'bad salt' * 2, our_app_iters)
if (_ := dk.hex()) is not None:
    print(repr(_))
