#!/usr/bin/python3
"""The Python peer of the join benchmark (tests/bench/joins.sh): join_table.lua's
stream-table join as a hand-written confluent_kafka loop, with the table in a dict
device -> owner (in memory only: it is read again from the table's topic at every
start).

    /usr/bin/python3 tests/bench/py_join.py --broker B --count N [--input phone-data] [--table phone-owners] [--output out-py-join]
    /usr/bin/python3 tests/bench/py_join.py --in-process ROWS_FILE --table-file TABLE_FILE [--rows N] [--repeat N]

One consumer in a group, subscribed to both topics (co-partitioned: partition p of
each comes to the same instance). On assignment the table's partitions start from
their beginning, and the stream's partitions stay paused until every table
partition has been read up to the end offset it had then, so every reading sees
the table as it was filled before it. A table record sets its key's owner (a null
value deletes it). Per batch of up to 1000 messages, for a reading: json.loads,
the owner's fields that the reading lacks are added (the reading's own win, as in
docs/joins.md; a device without an owner goes out as it came: a left join), compact
json.dumps, produce with the same key. Otherwise the same loop as py_crash.py:
offsets are committed asynchronously every few seconds and synchronously at the
end, after the producer is flushed (at-least-once, like luastream). Exits 0 once N
records are produced and acknowledged.

--in-process times the join alone, as bench_pipeline does luastream's (no Kafka,
one core): the records of TABLE_FILE (key TAB value; an empty value is a
tombstone) fill the dict, untimed, then the first N lines of ROWS_FILE (key TAB
value) go through the same per-reading function as the Kafka loop's, the outputs
counted by their bytes; prints `full_rows_per_s R`, the best of --repeat passes.
"""
import argparse
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer


def joiner(owners):
    """The join of one reading: its value bytes -> the output's value (str)."""
    loads, dumps = json.loads, json.JSONEncoder(separators=(",", ":")).encode

    def join(key, value):
        row = loads(value)
        owner = owners.get(key)
        if owner is not None:
            row = {**owner, **row}  # the reading's own fields win
        return dumps(row)
    return join


def read_records(path, limit=None):
    """[(key bytes, value bytes or None)] of a `key TAB value` file."""
    recs = []
    with open(path, "rb") as f:
        for line in f:
            k, v = line.rstrip(b"\n").split(b"\t", 1)
            recs.append((k, v or None))
            if limit is not None and len(recs) == limit:
                break
    return recs


def in_process(a):
    owners = {}
    for k, v in read_records(a.table_file):
        if v is None:
            owners.pop(k, None)
        else:
            owners[k] = json.loads(v)
    rows = read_records(a.in_process, a.rows)
    join = joiner(owners)
    best = None
    for _ in range(a.repeat):
        out = 0
        t0 = time.perf_counter()
        for k, v in rows:
            out += len(join(k, v))
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    print("py_join: %d rows, %d owners, %d output bytes per pass" % (len(rows), len(owners), out))
    print("full_rows_per_s %.0f" % (len(rows) / best))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker")
    ap.add_argument("--count", type=int, help="stop after this many outputs")
    ap.add_argument("--in-process", metavar="ROWS_FILE")
    ap.add_argument("--table-file")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--input", default="phone-data")
    ap.add_argument("--table", default="phone-owners")
    ap.add_argument("--output", default="out-py-join")
    ap.add_argument("--group", default="py-join")
    ap.add_argument("--commit-interval", type=float, default=5.0)
    a = ap.parse_args()
    if a.in_process:
        if not a.table_file:
            ap.error("--in-process needs --table-file")
        return in_process(a)
    if not a.broker or a.count is None:
        ap.error("give --broker and --count (or --in-process)")

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

    table, owners = a.table, {}  # device (key bytes) -> owner dict
    loading = {}   # table partition -> its end offset at assignment, until read up to it
    paused = []    # stream partitions waiting for the table

    def on_assign(c, parts):
        for p in parts:
            if p.topic == table:
                p.offset = OFFSET_BEGINNING  # the dict is rebuilt from the whole topic
                lo, hi = c.get_watermark_offsets(p, timeout=10, cached=False)
                if hi > lo:
                    loading[p.partition] = hi
        c.incremental_assign(parts)
        wait = [p for p in parts if p.topic != table]
        if loading and wait:
            c.pause(wait)
            paused.extend(wait)
        print("py_join: partitions assigned: %d (%d table partitions to load)" % (len(parts), len(loading)),
              file=sys.stderr, flush=True)

    def on_revoke(c, parts):
        c.incremental_unassign(parts)

    consumer.subscribe([a.input, table], on_assign=on_assign, on_revoke=on_revoke)

    loads, join = json.loads, joiner(owners)
    produce, poll, out_topic = producer.produce, producer.poll, a.output
    produced = table_records = 0
    last_commit = time.monotonic()
    while produced < a.count:
        msgs = consumer.consume(num_messages=1000, timeout=0.1)
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    print("py_join: consumer: %s" % m.error(), file=sys.stderr)
                continue
            key = m.key()
            if m.topic() == table:
                v = m.value()
                if v is None:
                    owners.pop(key, None)  # a tombstone
                else:
                    owners[key] = loads(v)
                table_records += 1
                end = loading.get(m.partition())
                if end is not None and m.offset() + 1 >= end:
                    del loading[m.partition()]
                    if not loading and paused:
                        consumer.resume(paused)
                        paused.clear()
                continue
            value = join(key, m.value())
            while True:
                try:
                    produce(out_topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.01)  # the local queue is full: wait for acknowledgements
            produced += 1
        poll(0)
        if failed:
            print("py_join: delivery failed: %s" % failed[0], file=sys.stderr)
            return 1
        now = time.monotonic()
        if now - last_commit >= a.commit_interval:
            last_commit = now
            # at-least-once: what is committed has been acknowledged
            if producer.flush(30) == 0 and not failed:
                consumer.commit(asynchronous=True)
    left = producer.flush(30)
    if left or failed:
        print("py_join: %d records unacknowledged, %d failed" % (left, len(failed)), file=sys.stderr)
        return 1
    consumer.commit(asynchronous=False)
    consumer.close()
    print("py_join: %d records out, %d table records read, %d owners" % (produced, table_records, len(owners)),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
