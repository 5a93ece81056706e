"""Calls over amqps, with addTask.py's CELERY_SSL_* settings:
python tls_calls.py add            prints add(4, 10)
python tls_calls.py ssl NODE       prints the `broker.ssl` of NODE's `inspect stats`, as JSON."""
import json
import sys

from addTask import add, app

call = sys.argv[1]
if call == "add":
    print(add.delay(4, 10).get(timeout=30))
elif call == "ssl":
    node = sys.argv[2]
    stats = app.control.inspect([node], timeout=10).stats() or {}
    print(json.dumps(stats[node]["broker"]["ssl"], sort_keys=True))
else:
    sys.exit("unknown call " + call)
