# From the Python 3.11 documentation, Doc/library/pprint.rst, line 92.
# allow: pprint
import pprint
stuff = ['spam', 'eggs', 'lumberjack', 'knights', 'ni']
if (_ := stuff.insert(0, stuff[:])) is not None:
    print(repr(_))
pp = pprint.PrettyPrinter(indent=4)
if (_ := pp.pprint(stuff)) is not None:
    print(repr(_))
pp = pprint.PrettyPrinter(width=41, compact=True)
if (_ := pp.pprint(stuff)) is not None:
    print(repr(_))
tup = ('spam', ('eggs', ('lumberjack', ('knights', ('ni', ('dead', ('parrot', ('fresh fruit',))))))))
pp = pprint.PrettyPrinter(depth=6)
if (_ := pp.pprint(tup)) is not None:
    print(repr(_))
