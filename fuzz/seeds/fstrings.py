s = f"{x!r:>{w}} {d["k"]} {f'{1}'}" rb"\d" """tri
ple""" t"{y}"
t = f"""{
    a  # comment
}"""
