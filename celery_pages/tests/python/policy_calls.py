"""Celery's per-task policies as a Python caller meets them, against
whatever worker consumes CELERY_QUEUE: python policy_calls.py CALL.

Each task sent prints `<task id> <outcome> <states seen>`: the value, or the
exception's type and message, and every state message the caller's
`.get(on_message=...)` received (RETRY, SUCCESS, FAILURE, ...).
"""
import sys

from addTask import add, flaky_add, slow_add

call = sys.argv[1]


def run(task, args, **options):
    states = []
    result = task.apply_async(args, **options)

    def seen(message):
        # The reply queue also carries late answers about earlier tasks
        # (Python's prefork worker answers a task it stopped at its hard
        # limit twice); only this task's count.
        if message["task_id"] == result.id:
            states.append(message["status"])

    try:
        value = result.get(timeout=60, on_message=seen)
        outcome = repr(value)
    except Exception as exc:  # the task's own exception, re-raised by .get()
        outcome = f"{type(exc).__name__}: {exc}"
    print(result.id, outcome, states)


if call == "retry":
    run(flaky_add, (2, 3, 2))
elif call == "retries-exhausted":
    run(flaky_add, (2, 3, 9))
elif call == "hard-limit":
    # A 30-second task stopped after one; the next task is answered long
    # before the 30 seconds (a worker of one process or slot).
    run(slow_add, (1, 2, 30), time_limit=1)
    run(add, (1, 1))
elif call == "soft-limit":
    run(slow_add, (1, 2, 3), soft_time_limit=1, time_limit=5)
else:
    sys.exit("unknown call " + call)
