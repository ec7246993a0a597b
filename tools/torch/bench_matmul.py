#!/usr/bin/python3
"""torch.matmul GFLOP/s on the sgemm shapes of docs/DESIGN (the CPU peer for tools/bench.ts).

    /usr/bin/python3 tools/torch/bench_matmul.py --threads 1
    /usr/bin/python3 tools/torch/bench_matmul.py --threads 2

Shapes: a=[12800x64]@[64x64], b=[12800x64]@[64x256], c=256x[50x64]@[64x50] (batched),
d=[2048x64]@[64x12000], e=[1024x1024]@[1024x1024]. float32, inputs N(0,1), output allocated by
each call (plain torch.matmul). Each round runs enough calls for about --round-seconds; the
result is the best of --rounds rounds. FLOPs = 2*M*N*K (times the batch for c).
One JSON line per shape on stdout; without torch, one {"event": "skipped"} line and exit 0.
"""

import argparse
import json
import sys
import time

try:
    import torch
except ImportError:
    print("bench_matmul.py: PyTorch not available (apt-get install -y python3-torch, run with "
          "/usr/bin/python3); skipping", file=sys.stderr)
    print(json.dumps({"event": "skipped", "tool": "bench_matmul.py",
                      "reason": "torch not installed"}))
    sys.exit(0)

SHAPES = {
    "a": (1, 12800, 64, 64),
    "b": (1, 12800, 64, 256),
    "c": (256, 50, 64, 50),
    "d": (1, 2048, 64, 12000),
    "e": (1, 1024, 1024, 1024),
}


def bench(batch, m, k, n, rounds, round_seconds):
    g = torch.Generator()
    g.manual_seed(0)
    if batch == 1:
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
    else:
        a = torch.randn(batch, m, k, generator=g)
        b = torch.randn(batch, k, n, generator=g)
    flop = 2.0 * batch * m * n * k
    for _ in range(3):  # warm-up
        torch.matmul(a, b)
    # calibrate: calls per round for ~round_seconds
    iters = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b)
        dt = time.perf_counter() - t0
        if dt >= round_seconds / 4 or iters >= 1 << 20:
            break
        iters *= 2
    iters = max(1, int(iters * round_seconds / max(dt, 1e-9)))
    best = float("inf")
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b)
        dt = (time.perf_counter() - t0) / iters
        times.append(dt)
        best = min(best, dt)
    times.sort()
    return flop / best / 1e9, flop / times[len(times) // 2] / 1e9, iters, best


def main():
    ap = argparse.ArgumentParser(description="torch.matmul GFLOP/s on duaf's benchmark shapes")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-seconds", type=float, default=0.2)
    ap.add_argument("--shapes", default="abcde", help="subset of the shape letters")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.shapes:
        batch, m, k, n = SHAPES[name]
        gflops, median, iters, best = bench(batch, m, k, n, args.rounds, args.round_seconds)
        print(json.dumps({
            "tool": "bench_matmul.py", "shape": name, "batch": batch, "m": m, "k": k, "n": n,
            "threads": torch.get_num_threads(), "gflops": round(gflops, 2),
            "gflops_median": round(median, 2), "best_seconds": best, "iters_per_round": iters,
            "rounds": args.rounds, "torch": torch.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
