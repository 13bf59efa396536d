# From the Python 3.11 documentation, Doc/library/textwrap.rst, line 117.
# allow: textwrap
import textwrap
from textwrap import *
s = 'hello\n\n \nworld'
if (_ := indent(s, '  ')) is not None:
    print(repr(_))
if (_ := print(indent(s, '+ ', lambda line: True))) is not None:
    print(repr(_))
