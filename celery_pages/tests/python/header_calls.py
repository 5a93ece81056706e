"""Which headers a worker passes on to the next step of a chain: sends
chain(add(1, 2) on Q1, add(3) on Q2) with an unknown header (`sentry-trace`),
lets the worker on Q1 run the first step, takes the second step's message
from Q2 (nothing consumes it) and prints the headers it carries beyond
Celery's own: python header_calls.py Q1 Q2"""
import sys
import time

from celery import chain

from addTask import add, app

CELERY_HEADERS = {
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
    "ignore_result", "replaced_task_nesting", "stamped_headers", "stamps",
}

q1, q2 = sys.argv[1], sys.argv[2]
chain(add.s(1, 2).set(queue=q1), add.s(3).set(queue=q2)).apply_async(
    headers={"sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"}
)
with app.connection() as connection:
    channel = connection.default_channel
    channel.queue_declare(q2, durable=True, auto_delete=False)
    for _ in range(300):
        message = channel.basic_get(q2, no_ack=True)
        if message:
            extra = {k: v for k, v in message.headers.items() if k not in CELERY_HEADERS}
            print(sorted(extra.items()))
            break
        time.sleep(0.1)
    else:
        sys.exit("the next step never came")
    channel.queue_delete(q2)
