# From the Python 3.11 documentation, Doc/library/re.rst, line 461.
# allow: 
import re
m = re.search('(?<=abc)def', 'abcdef')
if (_ := m.group(0)) is not None:
    print(repr(_))
m = re.search('(?<=-)\\w+', 'spam-egg')
if (_ := m.group(0)) is not None:
    print(repr(_))
