"""Serialization formats: string, bytes, int, double, msgpack and json keys and values
pass through a pipeline that changes nothing (scripts/formats_passthrough.lua), and
come out as exactly the expected bytes.

int is read from 1, 2, 4 or 8 big-endian bytes and always written as 8 (like Kafka's
Short/Integer/LongSerializer); double is 8-byte big-endian IEEE-754. MessagePack
inputs are written in the canonical (smallest) form, which is what the encoder
writes back. (No Python msgpack module here: the bytes are built by hand.)
"""

import json
import struct
from collections import Counter

from conftest import SCRIPTS, produce, read_all, wait_committed_to_end

SCRIPT = SCRIPTS / "formats_passthrough.lua"
FORMATS = ["string", "bytes", "int", "double", "msgpack", "json"]


def q(v):
    return struct.pack(">q", v)


def d(v):
    return struct.pack(">d", v)


def mp_str(s):
    b = s.encode()
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b


# format -> [(key in, value in, key out, value out)]
CASES = {
    "string": [
        (b"k1", b"hello", b"k1", b"hello"),
        ("ключ".encode(), "héllo wörld ✓ 😀".encode(), "ключ".encode(), "héllo wörld ✓ 😀".encode()),
        (None, b"no key", None, b"no key"),
        (b"k3", b"", b"k3", b""),
    ],
    "bytes": [
        (b"\x00\x01\xff", bytes(range(256)), b"\x00\x01\xff", bytes(range(256))),
        (b"k2", b"\xc3\x28 not UTF-8 \xff", b"k2", b"\xc3\x28 not UTF-8 \xff"),
        (b"k3", b"", b"k3", b""),
        (b"", b"\x00", b"", b"\x00"),
    ],
    "int": [
        (q(42), b"\x7f", q(42), q(127)),
        (struct.pack(">h", -2), struct.pack(">h", -32768), q(-2), q(-32768)),
        (struct.pack(">i", 7), struct.pack(">i", -123456789), q(7), q(-123456789)),
        (b"\xff", q(2 ** 63 - 1), q(-1), q(2 ** 63 - 1)),
        (q(0), q(-2 ** 63), q(0), q(-2 ** 63)),
        (q(1), q(2 ** 53 + 1), q(1), q(2 ** 53 + 1)),
    ],
    "double": [(d(3.25), d(v), d(3.25), d(v)) for v in
               [0.1, -0.0, float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308,
                2.0 ** 53 + 2, -1.5, 1e21, 123456789.0]],
    "msgpack": [(mp_str("key"), v, mp_str("key"), v) for v in [
        b"\x05",                                   # positive fixint
        b"\xcc\xc8",                               # uint8 200
        b"\xcd\x01\x00",                           # uint16 256
        b"\xce\x00\x01\x00\x00",                   # uint32 65536
        b"\xcf" + struct.pack(">Q", 2 ** 53 + 1),  # beyond 2^53: int64
        b"\xcf" + struct.pack(">Q", 2 ** 64 - 1),  # uint64 max
        b"\xd3" + q(-2 ** 63),                     # int64 min
        b"\xff",                                   # negative fixint -1
        b"\xd0\x80",                               # int8 -128
        b"\xd1\xff\x00",                           # int16 -256
        b"\xcb" + d(1.5),                          # float64
        b"\xcb" + d(-0.0),                         # -0 keeps its sign
        b"\xc3", b"\xc2",                          # true, false
        mp_str("hello"),
        b"\xd9\x20" + b"x" * 32,                   # str8
        b"\x92\x01" + mp_str("a"),                 # [1, "a"]
        b"\x90",                                   # []
        b"\x80",                                   # {}
        b"\x81" + mp_str("k") + b"\x93\x01\x02\x03",     # {k: [1, 2, 3]}
        b"\x81" + mp_str("n") + b"\x81" + mp_str("m") + b"\xc0",  # {n: {m: nil}}
    ]] + [(b"\x07", b"\x07", b"\x07", b"\x07")],
}

# JSON: compared as parsed values (the encoder chooses spacing and key order).
JSON_CASES = [
    b'{"a": 1, "b": [1, 2.5, "x", null, true, false], "c": {}, "d": [], "e": {"f": null}}',
    b"9007199254740993",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"0.1",
    b"1e300",
    b"-2.5e-300",
    b'"\\u00e9\\ud83d\\ude00 tab\\t quote\\" backslash\\\\ nl\\n \\u0001"',
    b"[]",
    b"{}",
    b"[[], {}, [[]], {\"x\": []}]",
    b'{"big": 12345678901234567890, "neg": -12345678901234567, "f": 0.30000000000000004}',
]

# A map with several entries: the order of entries is not kept, the entries are.
MP_MULTI = b"\x83" + mp_str("a") + b"\x01" + mp_str("b") + b"\x02" + mp_str("c") + b"\xc3"


def typed(v):
    """A JSON value with bools, ints and floats told apart, for exact comparison."""
    if isinstance(v, dict):
        return {k: typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [typed(x) for x in v]
    return (type(v).__name__, v)


def test_every_format_passes_through_with_exact_bytes(broker_factory, run_app):
    """Each format's keys and values, read and written again unchanged: the bytes out
    are exactly the expected ones (JSON compared as typed parsed values)."""
    topics = {}
    for f in FORMATS:
        topics[f"fmt-{f}-in"] = 1
        topics[f"fmt-{f}-out"] = 4
    broker = broker_factory(topics)
    for f, cases in CASES.items():
        produce(broker.addr, f"fmt-{f}-in", [(k, v, None) for k, v, _, _ in cases])
    produce(broker.addr, "fmt-msgpack-in", [(b"\x08", MP_MULTI, None)])
    produce(broker.addr, "fmt-json-in", [(b'"k"', v, None) for v in JSON_CASES])

    app = run_app(SCRIPT, broker.addr)
    for f in FORMATS:
        wait_committed_to_end(broker.addr, "formats-e2e", f"fmt-{f}-in", 60, app=app)
    assert app.stop() == 0, app.stderr()

    for f, cases in CASES.items():
        got = read_all(broker.addr, f"fmt-{f}-out")
        if f == "msgpack":
            multi = [r for r in got if r.key == b"\x08"]
            got = [r for r in got if r.key != b"\x08"]
            assert len(multi) == 1
            v = multi[0].value
            assert v[:1] == b"\x83"
            assert sorted(v[1 + 3 * i:4 + 3 * i] for i in range(3)) == \
                sorted(MP_MULTI[1 + 3 * i:4 + 3 * i] for i in range(3)), v
        want = Counter((ko, vo) for _, _, ko, vo in cases)
        assert Counter((r.key, r.value) for r in got) == want, f

    got = read_all(broker.addr, "fmt-json-out")
    assert all(r.key == b'"k"' for r in got), [r.key for r in got]
    assert sorted(json.dumps(typed(json.loads(r.value)), sort_keys=True) for r in got) == \
        sorted(json.dumps(typed(json.loads(v)), sort_keys=True) for v in JSON_CASES)
    n_in, n_out, skipped, dead = app.stats()
    assert n_in == n_out == sum(map(len, CASES.values())) + 1 + len(JSON_CASES)
