"""A task only the policy tests use, on the chapter's app: a worker
started with `-A policy_tasks` runs it beside addTask's own.

`policy.retry_add(x, y, retries)` asks to be retried (`self.retry()`, no
exception) while it has run fewer than `retries` times before, with at
most one retry: past it, Celery raises `MaxRetriesExceededError`.
"""
from addTask import app


@app.task(name="policy.retry_add", bind=True, max_retries=1, default_retry_delay=1)
def retry_add(self, x, y, retries):
    if self.request.retries < retries:
        raise self.retry()
    return x + y
