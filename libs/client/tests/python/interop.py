"""The official Python client on the other side of Magnetar's Rust client.

Usage: interop.py consume TOPIC N | produce TOPIC N
(PULSAR_URL names the service). Raises on any mismatch.
"""

import os
import sys

import pulsar

URL = os.environ["PULSAR_URL"]


def consume(topic, n):
    c = pulsar.Client(URL, operation_timeout_seconds=15, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    consumer = c.subscribe(topic, "python", initial_position=pulsar.InitialPosition.Earliest)
    for i in range(n):
        m = consumer.receive(timeout_millis=15000)
        if m.data() != f"rust-{i}".encode():
            raise AssertionError(f"message {i}: {m.data()!r}")
        if m.partition_key() != f"k{i % 5}":
            raise AssertionError(f"message {i}: key {m.partition_key()!r}")
        if m.properties() != {"i": str(i)}:
            raise AssertionError(f"message {i}: properties {m.properties()}")
        consumer.acknowledge(m)
    try:
        m = consumer.receive(timeout_millis=500)
        raise AssertionError(f"unexpected extra message {m.data()!r}")
    except pulsar.Timeout:
        pass
    c.close()


def produce(topic, n):
    c = pulsar.Client(URL, operation_timeout_seconds=15, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    # Blocks when the client's pending queue (1000 by default) is full: without
    # it the client fails the surplus sends with ProducerQueueIsFull, which a
    # slow machine reaches.
    p = c.create_producer(
        topic,
        batching_enabled=True,
        batching_max_messages=100,
        compression_type=pulsar.CompressionType.ZSTD,
        block_if_queue_full=True,
    )
    errors = []

    def done(res, _msg_id):
        if res != pulsar.Result.Ok:
            errors.append(res)

    for i in range(n):
        p.send_async(f"py-{i}".encode(), done, partition_key=f"k{i % 5}", properties={"i": str(i)})
    p.flush()
    if errors:
        raise AssertionError(f"{len(errors)} sends failed, first: {errors[0]}")
    c.close()


if __name__ == "__main__":
    mode, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"consume": consume, "produce": produce}[mode](topic, n)
    print(f"ok {mode}", flush=True)
