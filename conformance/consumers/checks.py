"""Shared by the Python consumer checks: the `ok`/`FAIL` lines of the shell scenarios."""
import sys

failures = 0


def check(what, ok):
    """Prints one result line; counts failures."""
    global failures
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        failures += 1


def done(name):
    """Prints the summary and exits non-zero if any check failed."""
    print(f"{name}: {failures} failed", flush=True)
    sys.exit(1 if failures else 0)
