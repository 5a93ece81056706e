"""Python twins of the tasks the own_task example adds, on the chapter's
app (its broker, its queue and addTask.add): a worker started with
`-A pages` runs them. Each checks its arguments' types as the Rust task's
typed parameters do, with the same TypeError text, and overflows where an
i64 does, so that either worker answers a call alike.
"""
import time

from addTask import app

I64 = range(-(2**63), 2**63)


def _int(function, name, value):
    if type(value) is not int:
        raise TypeError(f"{function}() argument '{name}' must be int, not {type(value).__name__}")


@app.task(name="pages.multiply")
def multiply(pages, books):
    _int("multiply", "pages", pages)
    _int("multiply", "books", books)
    product = pages * books
    if product not in I64:
        raise OverflowError("too many pages")
    return product


@app.task(name="pages.slow_multiply")
def slow_multiply(pages, books, seconds):
    _int("slow_multiply", "pages", pages)
    _int("slow_multiply", "books", books)
    if type(seconds) not in (int, float):
        raise TypeError(
            f"slow_multiply() argument 'seconds' must be float, not {type(seconds).__name__}"
        )
    if seconds < 0:
        raise ValueError("seconds must be 0 or more")
    time.sleep(seconds)
    return multiply(pages, books)
