"""One script of calls of the own_task example's tasks, by name, as any
Python caller sends them, against whatever worker consumes CELERY_QUEUE
and is named NODE: python own_task_calls.py NODE. One line per case:
its value, or its exception's type and message.
"""
import sys

from addTask import app

node = sys.argv[1]
CASES = [
    ("multiply", "pages.multiply", (120, 3), {}),
    ("keywords", "pages.multiply", (), {"pages": 120, "books": 3}),
    ("mixed", "pages.multiply", (120,), {"books": 3}),
    ("negative", "pages.multiply", (-4, 10), {}),
    ("missing", "pages.multiply", (120,), {}),
    ("extra", "pages.multiply", (1, 2, 3), {}),
    ("twice", "pages.multiply", (1, 2), {"pages": 3}),
    ("unknown keyword", "pages.multiply", (1, 2), {"chapters": 3}),
    ("a string", "pages.multiply", ("120", 3), {}),
    ("a float", "pages.multiply", (1.5, 3), {}),
    ("None", "pages.multiply", (None, 3), {}),
    ("overflow", "pages.multiply", (2**62, 4), {}),
    ("slow", "pages.slow_multiply", (120, 3, 0.2), {}),
    ("slow, negative wait", "pages.slow_multiply", (1, 2, -1), {}),
    ("the chapter's add beside them", "addTask.add", ("Kamu sudah membaca 4", " halaman"), {}),
]
for case, task, args, kwargs in CASES:
    try:
        value = app.send_task(task, args, kwargs).get(timeout=30)
        print(f"{case}: {value!r}")
    except Exception as exc:  # the task's own exception, re-raised by .get()
        print(f"{case}: {type(exc).__name__}: {exc}")
registered = app.control.inspect(destination=[node], timeout=5).registered() or {}
print("registered:", registered.get(node))
