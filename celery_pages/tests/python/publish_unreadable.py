"""Publishes three addTask.add tasks to a queue, the second with a
correlation_id of raw bytes that are not UTF-8 (py-amqp sends bytes as they
are), so the AMQP client library of a Rust worker cannot parse it.

Usage: publish_unreadable.py BROKER_HOST:PORT QUEUE REPLY_TO
"""
import sys

import amqp

host, queue, reply_to = sys.argv[1:4]
conn = amqp.Connection(host, userid="guest", password="guest")
conn.connect()
channel = conn.channel()
for i, correlation_id in enumerate([b"id-0", b"\xff\xfe-not-utf-8", b"id-2"]):
    channel.basic_publish(
        amqp.Message(
            body=("[[%d, 1], {}, {}]" % i).encode(),
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=reply_to,
            application_headers={"task": "addTask.add", "id": "id-%d" % i},
        ),
        exchange="",
        routing_key=queue,
    )
conn.close()
