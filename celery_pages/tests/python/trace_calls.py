"""Traced calls (addTask.py with CELERY_OTEL_FILE: OpenTelemetry's Celery
instrumentation) across a Python queue PYQ and a Rust one RSQ:
python trace_calls.py chain PYQ RSQ
    chain(add(4, 10) on PYQ, add(6) on RSQ, add(1) on PYQ); prints the
    result, then the three steps' task ids
python trace_calls.py retry_link PYQ RSQ LINK_ID
    flaky_add(1, 2, 1) on RSQ (it fails once and is retried) with the link
    callback add(5) on PYQ as task LINK_ID; prints the result"""
import sys

from celery import chain

from addTask import add, flaky_add

call, pyq, rsq = sys.argv[1:4]
if call == "chain":
    result = chain(add.s(4, 10).set(queue=pyq), add.s(6).set(queue=rsq), add.s(1).set(queue=pyq)).apply_async()
    print(result.get(timeout=30))
    print(result.parent.parent.id, result.parent.id, result.id)
elif call == "retry_link":
    link = add.s(5).set(queue=pyq, task_id=sys.argv[4])
    print(flaky_add.apply_async((1, 2, 1), queue=rsq, link=link).get(timeout=30))
else:
    sys.exit("unknown call " + call)
