"""Celery's per-task policies as a Python caller meets them, against
whatever worker consumes CELERY_QUEUE: python policy_calls.py CALL.

Each call prints `<task id> <outcome> <states seen>`: the value, or the
exception's type and message, and every state message the caller's
`.get(on_message=...)` received (RETRY, SUCCESS, FAILURE, ...).
"""
import sys

from addTask import flaky_add

call = sys.argv[1]


def run(task, args):
    states = []
    result = task.apply_async(args)
    try:
        value = result.get(timeout=60, on_message=lambda m: states.append(m["status"]))
        outcome = repr(value)
    except Exception as exc:  # the task's own exception, re-raised by .get()
        outcome = f"{type(exc).__name__}: {exc}"
    print(result.id, outcome, states)


if call == "retry":
    run(flaky_add, (2, 3, 2))
elif call == "retries-exhausted":
    run(flaky_add, (2, 3, 9))
else:
    sys.exit("unknown call " + call)
