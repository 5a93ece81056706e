"""The chapter's addTask.py, as the chapter wrote it.

Changes for the tests: the rpc:// result backend (the original has none,
so a caller could not .get() a result), the queue taken from CELERY_QUEUE
so that tests running at once do not share one, and the queue's kind and
exchange type from CELERY_QUEUE_TYPE and CELERY_EXCHANGE_TYPE (Celery's
defaults when unset); with CELERY_AT_LEAST_ONCE=1, a task is acked only
after it ran and its result was confirmed by the broker (Celery's default
acks first and publishes unconfirmed: a node's crash can lose a task);
with CELERY_TASK_EVENTS=1 it sends task events (-E); with CELERY_SSL_CA (and
CELERY_SSL_CERT, CELERY_SSL_KEY) it reaches an amqps:// broker with those
files as broker_use_ssl; with CELERY_OTEL_FILE, OpenTelemetry's Celery
instrumentation writes its spans to that file (otel_setup.py). Two teaching tasks
beside `add`, twins of the Rust worker's: `slow_add` (waits, then adds) and
`flaky_add` (fails its first attempts and retries).
"""
import os
import ssl
import time

from celery import Celery

if os.environ.get("CELERY_OTEL_FILE"):
    import otel_setup  # noqa: F401  (instruments Celery)

app = Celery(
    "addTask",
    broker=os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")
app.conf.task_default_queue_type = os.environ.get("CELERY_QUEUE_TYPE", "classic")
app.conf.task_default_exchange_type = os.environ.get("CELERY_EXCHANGE_TYPE", "direct")
if os.environ.get("CELERY_SSL_CA"):
    app.conf.broker_use_ssl = {
        "ca_certs": os.environ["CELERY_SSL_CA"],
        "certfile": os.environ.get("CELERY_SSL_CERT"),
        "keyfile": os.environ.get("CELERY_SSL_KEY"),
        "cert_reqs": ssl.CERT_REQUIRED,
    }
if os.environ.get("CELERY_TASK_EVENTS") == "1":
    app.conf.worker_send_task_events = True
if os.environ.get("CELERY_AT_LEAST_ONCE") == "1":
    app.conf.task_acks_late = True
    app.conf.broker_transport_options = {"confirm_publish": True}


@app.task
def add(x, y):
    return x + y


@app.task
def slow_add(x, y, seconds):
    time.sleep(seconds)
    return x + y


@app.task(bind=True, autoretry_for=(ValueError,), max_retries=3, default_retry_delay=1)
def flaky_add(self, x, y, failures):
    if self.request.retries < failures:
        raise ValueError(f"attempt {self.request.retries + 1} failed")
    return x + y
