# From the Python 3.11 documentation, Doc/library/functools.rst, line 672.
# allow: functools
from functools import wraps
def my_decorator(f):

    @wraps(f)
    def wrapper(*args, **kwds):
        print('Calling decorated function')
        return f(*args, **kwds)
    return wrapper
@my_decorator
def example():
    """Docstring"""
    print('Called example function')
if (_ := example()) is not None:
    print(repr(_))
if (_ := example.__name__) is not None:
    print(repr(_))
if (_ := example.__doc__) is not None:
    print(repr(_))
