#!/usr/bin/python3
"""The Python peer of the window benchmark (tests/bench/windows.sh): the windows of
window_stats.lua as a hand-written confluent_kafka loop, with the open windows of
every device in a dict (in memory only: no changelog, no local store, nothing
survives a restart).

    /usr/bin/python3 tests/bench/py_window.py --broker B --count N [--input phone-data] [--output out-py-window]

The semantics of docs/windows.md for `tumbling_window(10000)` (grace 0, a watermark
per message key) with `current()`: per batch of up to 1000 messages, json.loads,
gTotal = sqrt(gX² + gY² + gZ²); the row at ts is in [s, s + 10000) with
s = ts - ts mod 10000; a row whose window is not open and has closed already
(end + grace <= the key's watermark) is late and dropped; otherwise the window's
count, sum and peak of gTotal are updated and one row
{start, end, n, mean, peak} goes out (compact json.dumps, same key). Then the key's
watermark rises to ts, and every window of the key with end + grace <= watermark
closes and is forgotten. Otherwise the same loop as py_crash.py: offsets are
committed asynchronously every few seconds and synchronously at the end, after the
producer is flushed (at-least-once, like luastream). Exits 0 once N records are
produced and acknowledged.
"""
import json
import math
import sys
import time

from confluent_kafka import KafkaError

from py_crash import setup

SIZE_MS = 10000
GRACE_MS = 0


def main():
    a, consumer, producer, on_delivery, failed = setup("py_window", "out-py-window", "py-window")
    loads, dumps, sqrt = json.loads, json.JSONEncoder(separators=(",", ":")).encode, math.sqrt
    produce, poll, out_topic = producer.produce, producer.poll, a.output
    keys = {}  # message key -> [watermark, {window start: [n, sum, peak]}]
    produced = late = 0
    last_commit = time.monotonic()
    while produced < a.count:
        msgs = consumer.consume(num_messages=1000, timeout=0.1)
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    print("py_window: consumer: %s" % m.error(), file=sys.stderr)
                continue
            row = loads(m.value())
            ts = row["ts"]
            x, y, z = row["gX"], row["gY"], row["gZ"]
            g = sqrt(x * x + y * y + z * z)
            key = m.key()
            st = keys.get(key)
            if st is None:
                st = keys[key] = [ts, {}]
            wins = st[1]
            start = ts - ts % SIZE_MS
            end = start + SIZE_MS
            w = wins.get(start)
            if w is None:
                if end + GRACE_MS <= st[0]:
                    late += 1  # its window closed already
                    continue
                w = wins[start] = [1, g, g]
            else:
                w[0] += 1
                w[1] += g
                if g > w[2]:
                    w[2] = g
            value = dumps({"start": start, "end": end, "n": w[0], "mean": w[1] / w[0], "peak": w[2]})
            while True:
                try:
                    produce(out_topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.01)  # the local queue is full: wait for acknowledgements
            produced += 1
            if ts > st[0]:
                st[0] = ts
                if len(wins) > 1:  # (the row's own window ends after ts)
                    for s in [s for s in wins if s + SIZE_MS + GRACE_MS <= ts]:
                        del wins[s]  # closed: forgotten
        poll(0)
        if failed:
            print("py_window: delivery failed: %s" % failed[0], file=sys.stderr)
            return 1
        now = time.monotonic()
        if now - last_commit >= a.commit_interval:
            last_commit = now
            # at-least-once: what is committed has been acknowledged
            if producer.flush(30) == 0 and not failed:
                consumer.commit(asynchronous=True)
    left = producer.flush(30)
    if left or failed:
        print("py_window: %d records unacknowledged, %d failed" % (left, len(failed)), file=sys.stderr)
        return 1
    consumer.commit(asynchronous=False)
    consumer.close()
    print("py_window: %d records out, %d late rows dropped, %d keys, %d open windows"
          % (produced, late, len(keys), sum(len(st[1]) for st in keys.values())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
