# From the Python 3.11 documentation, Doc/library/textwrap.rst, line 65.
# allow: textwrap
import textwrap
from textwrap import *
if (_ := textwrap.shorten('Hello  world!', width=12)) is not None:
    print(repr(_))
if (_ := textwrap.shorten('Hello  world!', width=11)) is not None:
    print(repr(_))
if (_ := textwrap.shorten('Hello world', width=10, placeholder='...')) is not None:
    print(repr(_))
