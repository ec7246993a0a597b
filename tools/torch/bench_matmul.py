#!/usr/bin/python3
"""torch.matmul GFLOP/s on the sgemm shapes duaf benchmarks (the PyTorch CPU peer).

    /usr/bin/python3 tools/torch/bench_matmul.py --threads 1
    /usr/bin/python3 tools/torch/bench_matmul.py --threads 2
    /usr/bin/python3 tools/torch/bench_matmul.py --threads 1 --serve   (one round per request)

Shapes: a=[12800x64]@[64x64], b=[12800x64]@[64x256], c=256x[50x64]@[64x50] (batched),
d=[2048x64]@[64x12000], e=[1024x1024]@[1024x1024]; float32, inputs N(0,1); FLOPs = 2*M*N*K
(times the batch for c). Two figures per shape: "gflops" = plain torch.matmul (output allocated
by every call, as model code does) and "gflops_out" = torch.matmul(..., out=preallocated). Each
round runs enough calls for about --round-seconds; the result is the best of --rounds rounds
(the median is reported too).

--threads also sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before torch loads: Debian's torch
calls the system OpenBLAS (pthreads build), whose pool ignores torch.set_num_threads.
One JSON line per shape on stdout; without torch, one {"event": "skipped"} line and exit 0.

--serve keeps torch loaded and answers requests on stdin, one per line: "<shape> <seconds>" runs
one round of torch.matmul(a, b, out=c) on that shape for about that long and answers
{"shape", "gflops"}; the first request for a shape calibrates it. It first prints
{"event": "ready"}. tools/bench_kernels.ts drives it so that a torch round and a wasm round of the
same shape run back to back and see the same load on a shared machine.
"""

import argparse
import json
import os
import sys
import time

torch = None  # imported in main(), after the BLAS thread count is fixed


def import_torch(threads):
    """Debian's torch calls the system OpenBLAS (pthreads build), whose thread pool ignores
    torch.set_num_threads: pin it through the environment before the library loads."""
    global torch
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import torch as _torch
    except ImportError:
        print("bench_matmul.py: PyTorch not available (apt-get install -y python3-torch, run "
              "with /usr/bin/python3); skipping", file=sys.stderr)
        print(json.dumps({"event": "skipped", "tool": "bench_matmul.py",
                          "reason": "torch not installed"}))
        sys.exit(0)
    torch = _torch
    torch.set_num_threads(threads)


SHAPES = {
    "a": (1, 12800, 64, 64),
    "b": (1, 12800, 64, 256),
    "c": (256, 50, 64, 50),
    "d": (1, 2048, 64, 12000),
    "e": (1, 1024, 1024, 1024),
}


class Matmul:
    """One shape's operands, warmed up, with the calls per round calibrated to round_seconds.
    preallocated: torch.matmul(a, b, out=c); otherwise torch.matmul(a, b), allocating."""

    def __init__(self, batch, m, k, n, round_seconds, preallocated=True):
        g = torch.Generator()
        g.manual_seed(0)
        lead = () if batch == 1 else (batch,)
        self.a = torch.randn(*lead, m, k, generator=g)
        self.b = torch.randn(*lead, k, n, generator=g)
        self.out = torch.empty(*lead, m, n)
        self.preallocated = preallocated
        self.flop = 2.0 * batch * m * n * k
        for _ in range(3):  # warm-up
            self.call()
        t0 = time.perf_counter()
        self.call()
        self.iters = max(1, int(round_seconds / max(time.perf_counter() - t0, 1e-9)))

    def call(self):
        if self.preallocated:
            torch.matmul(self.a, self.b, out=self.out)
        else:
            torch.matmul(self.a, self.b)

    def round(self):
        """GFLOP/s of one round."""
        t0 = time.perf_counter()
        for _ in range(self.iters):
            self.call()
        return self.flop * self.iters / (time.perf_counter() - t0) / 1e9


def bench(batch, m, k, n, rounds, round_seconds, preallocated):
    """Best and median GFLOP/s over `rounds` rounds, and the calls per round."""
    mm = Matmul(batch, m, k, n, round_seconds, preallocated)
    rates = sorted(mm.round() for _ in range(rounds))
    return rates[-1], rates[(len(rates) - 1) // 2], mm.iters


def serve():
    """Answers "<shape> <seconds>" lines with one round's GFLOP/s (see the module docstring)."""
    served = {}
    print(json.dumps({"event": "ready", "threads": torch.get_num_threads(),
                      "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        name, seconds = line.split()
        if name not in served:
            served[name] = Matmul(*SHAPES[name], float(seconds))
        print(json.dumps({"shape": name, "gflops": round(served[name].round(), 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description="torch.matmul GFLOP/s on duaf's benchmark shapes")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-seconds", type=float, default=0.2)
    ap.add_argument("--shapes", default="abcde", help="subset of the shape letters")
    ap.add_argument("--serve", action="store_true", help="answer round requests on stdin")
    args = ap.parse_args()
    import_torch(args.threads)
    if args.serve:
        serve()
        return
    for name in args.shapes:
        batch, m, k, n = SHAPES[name]
        rec = {"tool": "bench_matmul.py", "shape": name, "batch": batch, "m": m, "k": k, "n": n,
               "threads": torch.get_num_threads(),
               "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
        # "gflops": torch.matmul(a, b) allocating its output each call (what model code does);
        # "gflops_out": torch.matmul(a, b, out=preallocated) (the kernel without allocation).
        for key, pre in (("gflops", False), ("gflops_out", True)):
            best, median, iters = bench(batch, m, k, n, args.rounds, args.round_seconds, pre)
            rec[key] = round(best, 2)
            rec[key + "_median"] = round(median, 2)
            rec[key + "_iters_per_round"] = iters
        rec.update(rounds=args.rounds, torch=torch.__version__)
        print(json.dumps(rec), flush=True)

if __name__ == "__main__":
    main()
