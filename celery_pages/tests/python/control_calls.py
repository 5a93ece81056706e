"""Remote control as a Python operator uses it, against the worker named
NODE on CELERY_QUEUE: python control_calls.py CALL NODE [TASK_ID]."""
import sys

from celery.exceptions import TaskRevokedError

from addTask import add, app

call, node = sys.argv[1], sys.argv[2]
if call == "unknown":
    print(app.control.broadcast("nosuch", destination=[node], reply=True, timeout=5))
elif call == "revoke":
    task_id = sys.argv[3]
    app.control.revoke(task_id)
    try:
        print(add.apply_async((1, 2), task_id=task_id).get(timeout=30))
    except TaskRevokedError as exc:
        print("TaskRevokedError:", exc)
    print(add.delay(1, 2).get(timeout=30))
else:
    sys.exit("unknown call " + call)
