"""Celery's per-task policies as a Python caller meets them, against
whatever worker consumes CELERY_QUEUE: python policy_calls.py CALL.

Each task sent prints `<task id> <outcome> <states seen>`: the value, or the
exception's type and message, and every state message the caller's
`.get(on_message=...)` received (RETRY, SUCCESS, FAILURE, ...).
"""
import sys
import time

from addTask import add, app, flaky_add, slow_add

call = sys.argv[1]


def run(task, args, **options):
    collect(task.apply_async(args, **options))


def collect(result):
    states = []

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
    print(result.id, outcome.replace(result.id, "<id>"), states)


if call == "retry":
    run(flaky_add, (2, 3, 2))
elif call == "retries-exhausted":
    run(flaky_add, (2, 3, 9))
elif call == "asked-retry":
    # A task's own self.retry(): run again while retries are left, then
    # MaxRetriesExceededError (the worker runs policy_tasks.py).
    collect(app.send_task("policy.retry_add", (1, 2, 1)))
    collect(app.send_task("policy.retry_add", (1, 2, 5)))
elif call == "hard-limit":
    # A 30-second task stopped after one; the next task is answered long
    # before the 30 seconds (a worker of one process or slot).
    run(slow_add, (1, 2, 30), time_limit=1)
    run(add, (1, 1))
elif call == "soft-limit":
    run(slow_add, (1, 2, 3), soft_time_limit=1, time_limit=5)
elif call in ("terminate", "control-terminate"):
    # Stop a running task: python policy_calls.py terminate NODE
    node = sys.argv[2]
    result = slow_add.apply_async((1, 2, 30))
    deadline = time.monotonic() + 60
    while True:
        active = app.control.inspect(destination=[node], timeout=1).active() or {}
        if any(task["id"] == result.id for task in active.get(node, [])):
            break
        if time.monotonic() > deadline:
            sys.exit("the task never started")
        time.sleep(0.1)
    if call == "terminate":
        replies = app.control.revoke(result.id, terminate=True, reply=True, destination=[node])
    else:
        replies = app.control.terminate(result.id, reply=True, destination=[node])
    print("reply", str(replies).replace(result.id, "<id>").replace(node, "<node>"))
    collect(result)
    unknown = app.control.terminate("no-such-task", reply=True, destination=[node])
    print("reply", str(unknown).replace(node, "<node>"))
elif call == "rate-limit":
    # Remote control of rate limits: python policy_calls.py rate-limit NODE
    node = sys.argv[2]

    def reply(name, **arguments):
        replies = app.control.broadcast(
            name, arguments=arguments, destination=[node], reply=True, timeout=5
        )
        print("reply", name, str(replies).replace(node, "<node>"))

    def registered():
        listed = app.control.inspect(destination=[node], timeout=5).registered() or {}
        print("registered", listed.get(node))

    reply("rate_limit", task_name="addTask.nosuch", rate_limit="10/s")
    reply("rate_limit", task_name="addTask.add", rate_limit="ten/s")
    reply("rate_limit", task_name="addTask.add", rate_limit="600/m")
    registered()
    run(add, (1, 2))
    run(add, (3, 4))
    reply("rate_limit", task_name="addTask.add", rate_limit=None)
    registered()
elif call == "control":
    # The rest of remote control: python policy_calls.py control NODE. Each
    # reply is printed whole where it is the same on every run, else its
    # shape (a clock's value, a memory size, a report's text).
    import re

    node = sys.argv[2]

    def ask(name, **arguments):
        replies = app.control.broadcast(
            name, arguments=arguments, destination=[node], reply=True, timeout=5
        )
        return replies[0][node] if replies else "no reply"

    def stats():
        return (app.control.inspect(destination=[node], timeout=5).stats() or {})[node]

    def concurrency():
        return stats()["pool"]["max-concurrency"]

    size = re.compile(r"^\d+(\.\d+)?(TB|GB|MB|KB|b)$")
    print("reply clock", {k: type(v).__name__ for k, v in ask("clock").items()})
    conf = ask("conf")
    wanted = ["broker_url", "result_backend", "task_default_queue",
              "task_default_queue_type", "task_default_exchange_type"]
    print("reply conf", {key: key in conf for key in wanted})
    print("reply report", ask("report")["ok"].startswith("\nsoftware -> "))
    print("reply query_task", ask("query_task", ids=["no-such-task"]))
    print("reply memsample", bool(size.match(ask("memsample"))))
    print("reply memdump", ask("memdump").startswith("- rss"))
    print("reply objgraph", ask("objgraph"))
    print("reply autoscale", ask("autoscale", max=4, min=1))
    before, prefetch = concurrency(), stats()["prefetch_count"]
    print("reply pool_grow", ask("pool_grow", n=1))
    grown = concurrency()
    print("prefetch after pool_grow", stats()["prefetch_count"] - prefetch)
    print("reply pool_shrink", ask("pool_shrink", n=1))
    # Python's prefork pool grows in the background: its stats show the
    # size it had; the Rust worker's show the change at once.
    print("pool size", grown - before, concurrency() - before)
    print("reply time_limit", ask("time_limit", task_name="addTask.add", hard=5, soft=3))
    print("reply time_limit", ask("time_limit", task_name="addTask.nosuch", hard=5))
    print("reply revoke_by_stamped_headers",
          ask("revoke_by_stamped_headers", headers={"k": "v"}))
    print("reply heartbeat", ask("heartbeat"))
    run(add, (1, 2))
elif call == "queues":
    # Several queues: python policy_calls.py queues NODE, on a worker that
    # consumes CELERY_QUEUE and CELERY_QUEUE.b (-Q).
    import os

    node, queue = sys.argv[2], os.environ["CELERY_QUEUE"]
    extra = queue + ".extra"

    def ask(name, **arguments):
        replies = app.control.broadcast(
            name, arguments=arguments, destination=[node], reply=True, timeout=5
        )
        return str(replies[0][node] if replies else "no reply").replace(queue, "<queue>")

    def names():
        listed = app.control.inspect(destination=[node], timeout=5).active_queues() or {}
        return sorted(q["name"].replace(queue, "<queue>") for q in listed.get(node, []))

    def until(done):
        deadline = time.monotonic() + 30
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)

    print("queues", names())
    collect(add.apply_async((1, 2), queue=queue + ".b"))
    print("reply add_consumer", ask("add_consumer", queue=extra))
    until(lambda: "<queue>.extra" in names())
    print("queues", names())
    collect(add.apply_async((5, 6), queue=extra))
    print("reply cancel_consumer", ask("cancel_consumer", queue=extra))
    until(lambda: "<queue>.extra" not in names())
    print("queues", names())
else:
    sys.exit("unknown call " + call)
