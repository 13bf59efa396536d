# From the Python 3.11 documentation, Doc/library/functools.rst, line 367.
# allow: functools
import functools
from functools import *
class Cell:

    def __init__(self):
        self._alive = False

    @property
    def alive(self):
        return self._alive

    def set_state(self, state):
        self._alive = bool(state)
    set_alive = partialmethod(set_state, True)
    set_dead = partialmethod(set_state, False)
c = Cell()
if (_ := c.alive) is not None:
    print(repr(_))
if (_ := c.set_alive()) is not None:
    print(repr(_))
if (_ := c.alive) is not None:
    print(repr(_))
