#!/usr/bin/python3
"""Accelerometer rows for the throughput benchmarks.

Writes one record per line, `key<TAB>value`, to stdout (or to --out):

    phone-0007<TAB>{"device":"phone-0007","ts":1764160000020,"gX":0.012345,"gY":-0.981234,"gZ":0.153021}

- `devices` phones report in turn (row i comes from phone i % devices, every phone
  sends every 20 ms), so every key carries the same number of rows;
- readings are gravity in a random orientation plus noise, with 6 decimals
  (about 85 bytes of JSON per row); now and then a phone is dropped or crashes:
  a burst of 4-9 g readings (their total acceleration is above the 3 g threshold);
- the device names are picked so that Kafka's murmur2 partitioner (librdkafka's
  `murmur2_random`, the Java client's default) spreads the keys evenly over
  `partitions` partitions: every partition gets floor or ceil(devices / partitions)
  keys, hence the same share of rows, which keeps every partition of the input and
  of the output topics under the dev broker's per-partition cap.

The output is deterministic for a given --seed. Also importable: `device_names()`,
`rows()`, `murmur2_partition()`.
"""
import argparse
import math
import random
import sys

BASE_TS = 1764160000000
PERIOD_MS = 20


def murmur2(data):
    """Kafka's murmur2 (the Java client's and librdkafka's murmur2 partitioners)."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length & 3
    if extra >= 3:
        h ^= data[n4 + 2] << 16
    if extra >= 2:
        h ^= data[n4 + 1] << 8
    if extra >= 1:
        h ^= data[n4]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def murmur2_partition(key, partitions):
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def device_names(devices, partitions):
    """`devices` names phone-NNNN, spread evenly over the partitions by murmur2."""
    quota = [devices // partitions + (1 if p < devices % partitions else 0)
             for p in range(partitions)]
    # Fill the larger quotas with whichever partitions come up first.
    quota.sort(reverse=True)
    need = {}
    names = []
    n = 0
    free = list(quota)
    while len(names) < devices:
        name = "phone-%04d" % n
        n += 1
        p = murmur2_partition(name.encode(), partitions)
        if p not in need:
            if not free:
                continue
            need[p] = free.pop(0)
        if need[p] == 0:
            continue
        need[p] -= 1
        names.append(name)
    return names


def rows(count, devices=200, partitions=16, seed=42, crash_rate=0.002):
    """Yields (key, value) strings."""
    rnd = random.Random(seed)
    names = device_names(devices, partitions)
    # Each phone rests in some orientation; gravity (1 g) is split over the axes.
    phones = []
    for name in names:
        theta = rnd.uniform(0, math.pi)
        phi = rnd.uniform(0, 2 * math.pi)
        phones.append([name, math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi),
                       math.cos(theta), 0])
    gauss = rnd.gauss
    fmt = '{"device":"%s","ts":%d,"gX":%.6f,"gY":%.6f,"gZ":%.6f}'
    for i in range(count):
        ph = phones[i % devices]
        ts = BASE_TS + (i // devices) * PERIOD_MS + rnd.randrange(3)
        if ph[4] == 0 and rnd.random() < crash_rate:
            ph[4] = rnd.randrange(3, 8)  # a crash: a few readings of 4-9 g
        if ph[4] > 0:
            ph[4] -= 1
            g = rnd.uniform(4.0, 9.0)
            x, y, z = gauss(0, 1), gauss(0, 1), gauss(0, 1)
            n = math.sqrt(x * x + y * y + z * z) or 1.0
            gx, gy, gz = x / n * g, y / n * g, z / n * g
        else:
            s = 0.03 if rnd.random() < 0.9 else 0.4  # at rest, or carried around
            gx, gy, gz = ph[1] + gauss(0, s), ph[2] + gauss(0, s), ph[3] + gauss(0, s)
        yield ph[0], fmt % (ph[0], ts, gx, gy, gz)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=500000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    out = sys.stdout if a.out == "-" else open(a.out, "w")
    buf = []
    for k, v in rows(a.rows, a.devices, a.partitions, a.seed):
        buf.append(k + "\t" + v + "\n")
        if len(buf) >= 10000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    out.flush()


if __name__ == "__main__":
    main()
