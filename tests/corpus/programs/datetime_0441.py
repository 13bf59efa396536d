# From the Python 3.11 documentation, Doc/library/datetime.rst, line 441.
# allow: 
from datetime import timedelta
year = timedelta(days=365)
another_year = timedelta(weeks=40, days=84, hours=23, minutes=50, seconds=600)
if (_ := (year == another_year)) is not None:
    print(repr(_))
if (_ := year.total_seconds()) is not None:
    print(repr(_))
from datetime import timedelta
year = timedelta(days=365)
ten_years = 10 * year
if (_ := ten_years) is not None:
    print(repr(_))
if (_ := (ten_years.days // 365)) is not None:
    print(repr(_))
nine_years = ten_years - year
if (_ := nine_years) is not None:
    print(repr(_))
three_years = nine_years // 3
if (_ := (three_years, three_years.days // 365)) is not None:
    print(repr(_))
