#!/usr/bin/python3
"""The Python peer of the state benchmark (tests/bench/state.sh): the stateful crash
computation of crash_stateful.lua as a hand-written confluent_kafka loop, with the
previous gTotal per key in a dict (in memory only: no changelog, no local store,
nothing survives a restart).

    /usr/bin/python3 tests/bench/py_crash_state.py --broker B --count N [--input phone-data] [--output out-py-state]

Per batch of up to 1000 messages: json.loads, gTotal = sqrt(gX² + gY² + gZ²),
dG = gTotal - the key's previous gTotal (0 for its first row), crash = |dG| > 3.0,
json.dumps (compact, like luastream's encoder), produce to the output topic with the
same key. Otherwise the same loop as py_crash.py: offsets are committed
asynchronously every few seconds and synchronously at the end, after the producer
is flushed (at-least-once, like luastream). Exits 0 once N records are produced and acknowledged.
"""
import json
import math
import sys
import time

from confluent_kafka import KafkaError

from py_crash import setup


def main():
    a, consumer, producer, on_delivery, failed = setup("py_crash_state", "out-py-state",
                                                       "py-crash-state")
    loads, dumps, sqrt = json.loads, json.JSONEncoder(separators=(",", ":")).encode, math.sqrt
    produce, poll, out_topic = producer.produce, producer.poll, a.output
    prev = {}  # message key -> previous gTotal
    produced = 0
    last_commit = time.monotonic()
    while produced < a.count:
        msgs = consumer.consume(num_messages=1000, timeout=0.1)
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    print("py_crash_state: consumer: %s" % m.error(), file=sys.stderr)
                continue
            row = loads(m.value())
            x, y, z = row["gX"], row["gY"], row["gZ"]
            g = sqrt(x * x + y * y + z * z)
            key = m.key()
            dg = g - prev.get(key, g)
            prev[key] = g
            row["gTotal"] = g
            row["dG"] = dg
            row["crash"] = abs(dg) > 3.0
            value = dumps(row)
            while True:
                try:
                    produce(out_topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.01)  # the local queue is full: wait for acknowledgements
            produced += 1
        poll(0)
        if failed:
            print("py_crash_state: delivery failed: %s" % failed[0], file=sys.stderr)
            return 1
        now = time.monotonic()
        if now - last_commit >= a.commit_interval:
            last_commit = now
            # at-least-once: what is committed has been acknowledged
            if producer.flush(30) == 0 and not failed:
                consumer.commit(asynchronous=True)
    left = producer.flush(30)
    if left or failed:
        print("py_crash_state: %d records unacknowledged, %d failed" % (left, len(failed)), file=sys.stderr)
        return 1
    consumer.commit(asynchronous=False)
    consumer.close()
    print("py_crash_state: %d records out" % produced, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
