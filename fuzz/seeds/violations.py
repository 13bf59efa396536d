import os
x = eval("1")
().__class__.__bases__[0].__subclasses__()
getattr(__builtins__, "eval")
from . import y
"{0.__globals__}".format(f)
