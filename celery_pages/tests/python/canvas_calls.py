"""Celery features a Python user of the chapter's app reaches for, called
against whatever worker consumes CELERY_QUEUE: python canvas_calls.py CALL.

Each call prints one line per fact the test checks.
"""
import datetime
import os
import sys
import time

from celery import chain
from celery.exceptions import TaskRevokedError

from addTask import add, app

QUEUE = os.environ["CELERY_QUEUE"]
call = sys.argv[1]


def on_queue(sig):
    # A chain step or callback goes where its own options say: keep them on
    # the test's queue, as an application with its own queue would.
    return sig.set(queue=QUEUE)


if call == "bigint":
    result = add.delay(2**70, 1).get(timeout=30)
    print(type(result).__name__, result)
    try:
        add.delay(2**70, "a").get(timeout=30)
    except TypeError as exc:
        print("TypeError:", exc)
elif call == "countdown":
    started = time.monotonic()
    later = add.apply_async((1, 2), countdown=3)
    now = add.delay(5, 5)
    print("first", now.get(timeout=30))
    print("then", later.get(timeout=30))
    print("waited for the eta:", time.monotonic() - started >= 3)
elif call == "delayed":
    print(add.apply_async((4, 10), countdown=int(sys.argv[2])).get(timeout=120))
elif call == "expired":
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    try:
        print(add.apply_async((1, 2), expires=past).get(timeout=30))
    except TaskRevokedError as exc:
        print("TaskRevokedError:", exc)
elif call == "chain":
    workflow = chain(
        on_queue(add.s("Kamu sudah membaca ", "4")),
        on_queue(add.s(" halaman")),
        on_queue(add.s("!")),
    )
    print(workflow.apply_async().get(timeout=30))
elif call == "long-chain":
    steps = [on_queue(add.s(0, 1))] + [on_queue(add.s(1)) for _ in range(int(sys.argv[2]) - 1)]
    print(chain(*steps).apply_async().get(timeout=60))
elif call == "link":
    callback = on_queue(add.s(10))
    callback.freeze()
    errback = add.si(100, 1)
    result = add.apply_async((1, 2), link=callback, link_error=errback)
    print("task", result.get(timeout=30))
    print("callback", app.AsyncResult(callback.id).get(timeout=30))
    try:
        add.apply_async((1, "a"), link=callback, link_error=errback).get(timeout=30)
    except TypeError as exc:
        print("TypeError:", exc)
elif call == "compressed":
    # A task body compressed by each method kombu offers: one line each.
    for method in ["zlib", "gzip", "bzip2", "lzma", "xz", "brotli", "zstd"]:
        try:
            result = add.apply_async(("Kamu sudah membaca ", method), compression=method).get(timeout=30)
        except Exception as exc:  # the comparison is the point
            result = "%s: %s" % (type(exc).__name__, exc)
        print(method, "->", repr(result))
elif call == "floats":
    # Floats JSON has no number for, as Python computes and kombu carries
    # them (NaN, Infinity): one line per case.
    nan = float("nan")
    cases = [
        ("overflow to inf", (1e308, 1e308)),
        ("nan", (nan, 1.0)),
        ("inf", (float("inf"), 1)),
        ("-inf", (float("-inf"), -1.5)),
        ("inf - inf", (float("inf"), float("-inf"))),
        ("a huge int and a float", (10 ** 400, 0.5)),
        ("strings that say NaN", ("NaN", "Infinity")),
    ]
    for name, args in cases:
        try:
            result = add.delay(*args).get(timeout=30)
            shown = "%s %r" % (type(result).__name__, result)
        except Exception as exc:  # the comparison is the point
            shown = "%s: %s" % (type(exc).__name__, exc)
        print(name, "->", shown)
elif call == "builtins":
    # Celery's built-in tasks, as the canvas sends them: one line per case,
    # the result or the exception, to compare one worker with another.
    def outcome(case):
        try:
            return repr(case())
        except Exception as exc:  # the comparison is the point
            return "%s: %s" % (type(exc).__name__, exc)

    def send(name, *args, **kwargs):
        return app.send_task(name, args=args, kwargs=kwargs).get(timeout=30)

    def without_ids(value):
        # Task and group ids are fresh each run: the shape is what compares.
        import re
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", repr(value))

    cases = [
        ("starmap", lambda: add.starmap([(1, 2), (3, 4)]).apply_async().get(timeout=30)),
        ("starmap of strings", lambda: add.starmap([("Kamu ", "4")]).apply_async().get(timeout=30)),
        ("starmap that raises", lambda: add.starmap([(1, "a")]).apply_async().get(timeout=30)),
        ("map", lambda: add.map([[1], [2]]).apply_async().get(timeout=30)),
        ("chunks", lambda: add.chunks(zip(range(4), range(4)), 2).apply_async().get(timeout=30)),
        ("accumulate", lambda: send("celery.accumulate", 1, 2, 3)),
        ("accumulate one", lambda: send("celery.accumulate", 1, 2, 3, index=1)),
        ("accumulate out of range", lambda: send("celery.accumulate", 1, index=5)),
        ("backend_cleanup", lambda: send("celery.backend_cleanup")),
        ("map of an unknown task", lambda: send("celery.map", "addTask.sub", [1])),
        ("chunks by name", lambda: without_ids(send("celery.chunks", add.s(), [[1, 2], [3, 4], [5, 6]], 2))),
        ("chunks of zero", lambda: send("celery.chunks", add.s(), [[1, 2]], 0)),
    ]
    for name, case in cases:
        print("%s -> %s" % (name, outcome(case)))
else:
    sys.exit("unknown call " + call)
