"""calc.sub: one operation of the demo calculator."""


def compute(a, b):
    return eval(f"{a} - {b}")  # finding: eval of a built string
