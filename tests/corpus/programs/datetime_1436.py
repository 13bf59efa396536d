# From the Python 3.11 documentation, Doc/library/datetime.rst, line 1436.
# allow: 
from datetime import datetime, timezone
if (_ := datetime(2019, 5, 18, 15, 17, 8, 132263).isoformat()) is not None:
    print(repr(_))
if (_ := datetime(2019, 5, 18, 15, 17, tzinfo=timezone.utc).isoformat()) is not None:
    print(repr(_))
from datetime import tzinfo, timedelta, datetime
class TZ(tzinfo):
    """A time zone with an arbitrary, constant -06:39 offset."""

    def utcoffset(self, dt):
        return timedelta(hours=-6, minutes=-39)
if (_ := datetime(2002, 12, 25, tzinfo=TZ()).isoformat(' ')) is not None:
    print(repr(_))
if (_ := datetime(2009, 11, 27, microsecond=100, tzinfo=TZ()).isoformat()) is not None:
    print(repr(_))
