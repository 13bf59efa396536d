import json
from collections import abc

def f(a, /, b=1, *c, d, **e) -> int:
    return [x for x in range(a) if (y := x)]

class C[T](object):
    async def m(self):
        async with g() as h:
            await h
