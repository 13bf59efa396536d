try:
    pass
except* E as e:
    raise
else:
    pass
finally:
    del x
type X[T = int] = list[T]
with (a as b, c as d):
    pass
