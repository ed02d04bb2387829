#!/usr/bin/python3
"""The Python peer of the throughput benchmark: crash detection as a hand-written
confluent_kafka loop, the way a careful developer would write it.

    /usr/bin/python3 tests/bench/py_crash.py --broker B --count N [--input phone-data] [--output out-py]

Per batch of up to 1000 messages: json.loads, gTotal = sqrt(gX² + gY² + gZ²),
crash = gTotal > 3.0, json.dumps (compact, like luastream's encoder), produce to the
output topic with the same key. Offsets are committed asynchronously every few
seconds and synchronously at the end, after the producer is flushed (at-least-once,
like luastream). Exits 0 once N records are produced and acknowledged.
"""
import argparse
import json
import math
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer


def setup(name, output, group):
    """Command line, consumer (subscribed) and producer of a peer script; shared with
    py_crash_state.py. Returns (args, consumer, producer, on_delivery, failed)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--count", type=int, required=True, help="stop after this many outputs")
    ap.add_argument("--input", default="phone-data")
    ap.add_argument("--output", default=output)
    ap.add_argument("--group", default=group)
    ap.add_argument("--commit-interval", type=float, default=5.0)
    a = ap.parse_args()

    consumer = Consumer({
        "bootstrap.servers": a.broker,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "partition.assignment.strategy": "cooperative-sticky",
    })
    producer = Producer({
        "bootstrap.servers": a.broker,
        "linger.ms": 5,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
    })
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)

    def on_assign(c, parts):
        print("%s: partitions assigned: %d" % (name, len(parts)), file=sys.stderr, flush=True)

    consumer.subscribe([a.input], on_assign=on_assign)
    return a, consumer, producer, on_delivery, failed


def main():
    a, consumer, producer, on_delivery, failed = setup("py_crash", "out-py", "py-crash")
    loads, dumps, sqrt = json.loads, json.JSONEncoder(separators=(",", ":")).encode, math.sqrt
    produce, poll, out_topic = producer.produce, producer.poll, a.output
    produced = 0
    last_commit = time.monotonic()
    while produced < a.count:
        msgs = consumer.consume(num_messages=1000, timeout=0.1)
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    print("py_crash: consumer: %s" % m.error(), file=sys.stderr)
                continue
            row = loads(m.value())
            x, y, z = row["gX"], row["gY"], row["gZ"]
            g = sqrt(x * x + y * y + z * z)
            row["gTotal"] = g
            row["crash"] = g > 3.0
            value = dumps(row)
            while True:
                try:
                    produce(out_topic, value, m.key(), on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.01)  # the local queue is full: wait for acknowledgements
            produced += 1
        poll(0)
        if failed:
            print("py_crash: delivery failed: %s" % failed[0], file=sys.stderr)
            return 1
        now = time.monotonic()
        if now - last_commit >= a.commit_interval:
            last_commit = now
            # at-least-once: what is committed has been acknowledged
            if producer.flush(30) == 0 and not failed:
                consumer.commit(asynchronous=True)
    left = producer.flush(30)
    if left or failed:
        print("py_crash: %d records unacknowledged, %d failed" % (left, len(failed)), file=sys.stderr)
        return 1
    consumer.commit(asynchronous=False)
    consumer.close()
    print("py_crash: %d records out" % produced, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
