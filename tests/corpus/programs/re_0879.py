# From the Python 3.11 documentation, Doc/library/re.rst, line 879.
# allow: 
import re
from re import *
if (_ := re.split('\\W+', 'Words, words, words.')) is not None:
    print(repr(_))
if (_ := re.split('(\\W+)', 'Words, words, words.')) is not None:
    print(repr(_))
if (_ := re.split('\\W+', 'Words, words, words.', 1)) is not None:
    print(repr(_))
if (_ := re.split('[a-f]+', '0a3B9', flags=re.IGNORECASE)) is not None:
    print(repr(_))
if (_ := re.split('(\\W+)', '...words, words...')) is not None:
    print(repr(_))
if (_ := re.split('\\b', 'Words, words, words.')) is not None:
    print(repr(_))
if (_ := re.split('\\W*', '...words...')) is not None:
    print(repr(_))
if (_ := re.split('(\\W*)', '...words...')) is not None:
    print(repr(_))
