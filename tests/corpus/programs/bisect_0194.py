# From the Python 3.11 documentation, Doc/library/bisect.rst, line 194.
# allow: bisect operator pprint
import bisect
from bisect import *
def grade(score, breakpoints=[60, 70, 80, 90], grades='FDCBA'):
    i = bisect(breakpoints, score)
    return grades[i]
if (_ := [grade(score) for score in [33, 99, 77, 70, 89, 90, 100]]) is not None:
    print(repr(_))
from collections import namedtuple
from operator import attrgetter
from bisect import bisect, insort
from pprint import pprint
Movie = namedtuple('Movie', ('name', 'released', 'director'))
movies = [Movie('Jaws', 1975, 'Speilberg'), Movie('Titanic', 1997, 'Cameron'), Movie('The Birds', 1963, 'Hitchcock'), Movie('Aliens', 1986, 'Scott')]
by_year = attrgetter('released')
if (_ := movies.sort(key=by_year)) is not None:
    print(repr(_))
if (_ := movies[bisect(movies, 1960, key=by_year)]) is not None:
    print(repr(_))
romance = Movie('Love Story', 1970, 'Hiller')
if (_ := insort(movies, romance, key=by_year)) is not None:
    print(repr(_))
if (_ := pprint(movies)) is not None:
    print(repr(_))
data = [('red', 5), ('blue', 1), ('yellow', 8), ('black', 0)]
if (_ := data.sort(key=lambda r: r[1])) is not None:
    print(repr(_))
keys = [r[1] for r in data]
if (_ := data[bisect_left(keys, 0)]) is not None:
    print(repr(_))
if (_ := data[bisect_left(keys, 1)]) is not None:
    print(repr(_))
if (_ := data[bisect_left(keys, 5)]) is not None:
    print(repr(_))
if (_ := data[bisect_left(keys, 8)]) is not None:
    print(repr(_))
