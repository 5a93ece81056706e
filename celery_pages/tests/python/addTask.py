"""The chapter's addTask.py, as the chapter wrote it.

Two changes for the tests: the rpc:// result backend (the original has none,
so a caller could not .get() a result), and the queue taken from CELERY_QUEUE
so that tests running at once do not share one.
"""
import os

from celery import Celery

app = Celery(
    "addTask",
    broker=os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")


@app.task
def add(x, y):
    return x + y
