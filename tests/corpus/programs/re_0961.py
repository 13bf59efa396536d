# From the Python 3.11 documentation, Doc/library/re.rst, line 961.
# allow: 
import re
from re import *
if (_ := re.sub('def\\s+([a-zA-Z_][a-zA-Z_0-9]*)\\s*\\(\\s*\\):', 'static PyObject*\\npy_\\1(void)\\n{', 'def myfunc():')) is not None:
    print(repr(_))
def dashrepl(matchobj):
    if matchobj.group(0) == '-':
        return ' '
    else:
        return '-'
if (_ := re.sub('-{1,2}', dashrepl, 'pro----gram-files')) is not None:
    print(repr(_))
if (_ := re.sub('\\sAND\\s', ' & ', 'Baked Beans And Spam', flags=re.IGNORECASE)) is not None:
    print(repr(_))
