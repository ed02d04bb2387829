#!/usr/bin/python3
"""The telemetry benchmark: examples/telemetry.lua on car messages (4 channels x
1500 samples, ~32 KB of JSON each), side by side in one run:

  (a) luastream, arrays = "vec"      examples/telemetry.lua (C kernels)
  (b) luastream, Lua tables          tests/bench/telemetry_tables.lua (Lua loops)
  (c) Python, json + numpy           tests/bench/py_telemetry.py

(a) and (b) run in process through build/bench_pipeline --input (decode, the
compiled pipeline, encode; no broker), (c) in its own process with the same
records and the same computation. Each prints messages/s, best of --repeat.

    /usr/bin/python3 tests/bench/telemetry_bench.py [--build build] [--messages 200]
        [--rows 5000] [--py-messages 1000] [--repeat 3]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_luastream(bench, script, data, rows, repeat):
    out = subprocess.run([bench, "--input", data, "--script", script, "--rows", str(rows),
                          "--repeat", str(repeat)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("bench_pipeline failed for %s:\n%s%s" % (script, out.stdout, out.stderr))
    rate = float(re.search(r"full_rows_per_s (\d+)", out.stdout).group(1))
    st = re.search(r"per stage: decode (\d+) ns, pipeline (-?\d+) ns, encode\+emit (-?\d+) ns", out.stdout)
    outs = re.search(r"outputs: ([\d.]+) per record", out.stdout).group(1)
    return rate, [int(x) / 1000 for x in st.groups()], outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--messages", type=int, default=200, help="distinct messages")
    ap.add_argument("--rows", type=int, default=5000, help="messages per luastream run")
    ap.add_argument("--py-messages", type=int, default=1000, help="messages per Python run")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    bench = os.path.join(a.build, "bench_pipeline")
    if not os.access(bench, os.X_OK):
        subprocess.run(["cmake", "--build", a.build, "--target", "bench_pipeline", "-j2"], check=True)
    with tempfile.TemporaryDirectory(prefix="luastream-telemetry.") as work:
        data = os.path.join(work, "cars.tsv")
        with open(data, "w") as f:
            subprocess.run([sys.executable, os.path.join(HERE, "gen_telemetry.py"), "--messages",
                            str(a.messages)], stdout=f, check=True)
        size = os.path.getsize(data) / a.messages
        ra, sa, oa = run_luastream(bench, os.path.join(ROOT, "examples", "telemetry.lua"), data,
                                   a.rows, a.repeat)
        rb, sb, ob = run_luastream(bench, os.path.join(HERE, "telemetry_tables.lua"), data,
                                   a.rows, a.repeat)
        py = subprocess.run([sys.executable, os.path.join(HERE, "py_telemetry.py"), data,
                             "--messages", str(a.py_messages), "--repeat", str(a.repeat)],
                            capture_output=True, text=True)
        if py.returncode != 0:
            raise SystemExit("py_telemetry.py failed:\n" + py.stderr)
        rc = float(re.search(r"msgs_per_s (\d+)", py.stdout).group(1))
        oc = re.search(r"([\d.]+) outputs per message", py.stdout).group(1)
    print()
    print("telemetry: %d distinct car messages of ~%.0f KB JSON (4 channels x 1500 samples), "
          "in process, one core, best of %d" % (a.messages, size / 1024, a.repeat))
    print("%-32s %10s %11s %13s %11s %9s" % ("peer", "msgs/s", "decode us", "pipeline us",
                                              "encode us", "outs/msg"))
    print("%-32s %10.0f %11.1f %13.1f %11.1f %9s" % ("(a) luastream, arrays = vec", ra, *sa, oa))
    print("%-32s %10.0f %11.1f %13.1f %11.1f %9s" % ("(b) luastream, Lua tables", rb, *sb, ob))
    print("%-32s %10.0f %11s %13s %11s %9s" % ("(c) python, json + numpy", rc, "-", "-", "-", oc))
    print("ratios: a/b = %.2f (target >= 5), a/c = %.2f (target >= 3); pipeline stage alone: "
          "a/b = %.1f" % (ra / rb, ra / rc, sb[1] / sa[1] if sa[1] > 0 else float("nan")))
    if not (oa == ob == oc):
        raise SystemExit("the three peers disagree on the outputs per message: %s, %s, %s" % (oa, ob, oc))


if __name__ == "__main__":
    main()
