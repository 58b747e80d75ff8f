"""TAP for the Python tests: cases recorded as they are checked, then
reported, one line each, with the detail of any that failed."""
import sys

_cases = []


def case(name, good, detail=""):
    """Records a case: name, whether it held, and what to print if not."""
    _cases.append((name, bool(good), detail))


def finish():
    """Prints the plan and every case, then exits: 0 when all held."""
    print(f"1..{len(_cases)}")
    for i, (name, good, detail) in enumerate(_cases, 1):
        print(f"{'ok' if good else 'not ok'} {i} - {name}")
        if not good:
            print("# " + str(detail).replace("\n", "\n# "))
    sys.exit(0 if all(good for _, good, _ in _cases) else 1)
