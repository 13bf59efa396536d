match p:
    case Point(x=0, y=[1, *r]) | {"k": v, **kw} if v:
        pass
    case _:
        pass
