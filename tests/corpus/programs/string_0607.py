# From the Python 3.11 documentation, Doc/library/string.rst, line 607.
# allow: 
if (_ := '{0}, {1}, {2}'.format('a', 'b', 'c')) is not None:
    print(repr(_))
if (_ := '{}, {}, {}'.format('a', 'b', 'c')) is not None:
    print(repr(_))
if (_ := '{2}, {1}, {0}'.format('a', 'b', 'c')) is not None:
    print(repr(_))
if (_ := '{2}, {1}, {0}'.format(*'abc')) is not None:
    print(repr(_))
if (_ := '{0}{1}{0}'.format('abra', 'cad')) is not None:
    print(repr(_))
if (_ := 'Coordinates: {latitude}, {longitude}'.format(latitude='37.24N', longitude='-115.81W')) is not None:
    print(repr(_))
coord = {'latitude': '37.24N', 'longitude': '-115.81W'}
if (_ := 'Coordinates: {latitude}, {longitude}'.format(**coord)) is not None:
    print(repr(_))
c = 3 - 5j
if (_ := 'The complex number {0} is formed from the real part {0.real} and the imaginary part {0.imag}.'.format(c)) is not None:
    print(repr(_))
class Point:

    def __init__(self, x, y):
        self.x, self.y = (x, y)

    def __str__(self):
        return 'Point({self.x}, {self.y})'.format(self=self)
if (_ := str(Point(4, 2))) is not None:
    print(repr(_))
coord = (3, 5)
if (_ := 'X: {0[0]};  Y: {0[1]}'.format(coord)) is not None:
    print(repr(_))
if (_ := "repr() shows quotes: {!r}; str() doesn't: {!s}".format('test1', 'test2')) is not None:
    print(repr(_))
if (_ := '{:<30}'.format('left aligned')) is not None:
    print(repr(_))
if (_ := '{:>30}'.format('right aligned')) is not None:
    print(repr(_))
if (_ := '{:^30}'.format('centered')) is not None:
    print(repr(_))
if (_ := '{:*^30}'.format('centered')) is not None:
    print(repr(_))
if (_ := '{:+f}; {:+f}'.format(3.14, -3.14)) is not None:
    print(repr(_))
if (_ := '{: f}; {: f}'.format(3.14, -3.14)) is not None:
    print(repr(_))
if (_ := '{:-f}; {:-f}'.format(3.14, -3.14)) is not None:
    print(repr(_))
if (_ := 'int: {0:d};  hex: {0:x};  oct: {0:o};  bin: {0:b}'.format(42)) is not None:
    print(repr(_))
if (_ := 'int: {0:d};  hex: {0:#x};  oct: {0:#o};  bin: {0:#b}'.format(42)) is not None:
    print(repr(_))
if (_ := '{:,}'.format(1234567890)) is not None:
    print(repr(_))
points = 19
total = 22
if (_ := 'Correct answers: {:.2%}'.format(points / total)) is not None:
    print(repr(_))
import datetime
d = datetime.datetime(2010, 7, 4, 12, 15, 58)
if (_ := '{:%Y-%m-%d %H:%M:%S}'.format(d)) is not None:
    print(repr(_))
for align, text in zip('<^>', ['left', 'center', 'right']):
    '{0:{fill}{align}16}'.format(text, fill=align, align=align)
octets = [192, 168, 0, 1]
if (_ := '{:02X}{:02X}{:02X}{:02X}'.format(*octets)) is not None:
    print(repr(_))
if (_ := int(_, 16)) is not None:
    print(repr(_))
width = 5
for num in range(5, 12):
    for base in 'dXob':
        print('{0:{width}{base}}'.format(num, base=base, width=width), end=' ')
    print()
