"""The chapter's addTask.py, as the chapter wrote it.

Changes for the tests: the rpc:// result backend (the original has none,
so a caller could not .get() a result), the queue taken from CELERY_QUEUE
so that tests running at once do not share one, and the queue's kind and
exchange type from CELERY_QUEUE_TYPE and CELERY_EXCHANGE_TYPE (Celery's
defaults when unset).
"""
import os

from celery import Celery

app = Celery(
    "addTask",
    broker=os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")
app.conf.task_default_queue_type = os.environ.get("CELERY_QUEUE_TYPE", "classic")
app.conf.task_default_exchange_type = os.environ.get("CELERY_EXCHANGE_TYPE", "direct")


@app.task
def add(x, y):
    return x + y
