#!/usr/bin/python3
"""PyTorch SASRec training peer (RecBole 1.2.1 defaults) on Amazon 2014 reviews.

    /usr/bin/python3 tools/torch/sasrec_train.py \
        --reviews ../shared/data/amazon-beauty-2014/reviews_Beauty_5.json.gz --threads 2

Model: tools/torch/sasrec_ref.py (RecBole's SASRec, module for module): n_layers 2, n_heads 2,
hidden 64, inner 256, hidden/attn dropout 0.5, gelu, layer_norm_eps 1e-12, initializer_range 0.02,
CE loss over all items (padding row included, as RecBole does), max_seq_length 50, batch 2048,
Adam lr 1e-3 (weight_decay 0).

Data: one JSON object per line with reviewerID, asin, unixReviewTime (other fields ignored).
Per user: interactions sorted by time (stable: ties keep input order), duplicate (user, item)
pairs dropped keeping the first of the sorted order. RecBole's augmentation: every prefix of a
user's sequence is one example whose target is the next item (prefix truncated to its last 50
items, right-padded with 0). Leave-one-out: the user's last example is test, the second-last
valid, the rest train. Item ids are 1..n in order of first appearance in the file; 0 = padding.

Evaluation (--eval): full ranking over all items (only the padding item is excluded, as RecBole
does for sequential models); rank = number of items scoring strictly higher than the target;
HR@10, NDCG@10, MRR@10 over valid/test users. Valid after each epoch; test once at the end with
the parameters of the best valid NDCG@10 epoch.

stdout: JSON lines (events "data", "epoch", "partial", "valid", "test", "done"); stderr: logs.
Without torch it prints one {"event": "skipped", ...} line and exits 0.
"""

import argparse
import gzip
import json
import math
import os
import resource
import sys
import time


def _pin_blas_threads(argv):
    """Debian's torch calls the system OpenBLAS (pthreads build), whose thread pool ignores
    torch.set_num_threads: pin it from --threads before torch loads."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            v = argv[i + 1]
        elif a.startswith("--threads="):
            v = a.split("=", 1)[1]
        else:
            continue
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, v)


_pin_blas_threads(sys.argv[1:])

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("sasrec_train.py: PyTorch not available (apt-get install -y python3-torch, run with "
          "/usr/bin/python3); skipping", file=sys.stderr)
    print(json.dumps({"event": "skipped", "tool": "sasrec_train.py",
                      "reason": "torch not installed"}))
    sys.exit(0)

sys.dont_write_bytecode = True  # keep tools/torch/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sasrec_ref import SASRec  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def open_text(path):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path)


def load_sequences(path):
    """Returns (per-user item-id sequences, n_items including padding)."""
    users = {}  # user token -> list of (time, input order, item token)
    order = 0
    item_ids = {}
    with open_text(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            u, i, t = r["reviewerID"], r["asin"], int(r["unixReviewTime"])
            if i not in item_ids:
                item_ids[i] = len(item_ids) + 1
            users.setdefault(u, []).append((t, order, item_ids[i]))
            order += 1
    seqs = []
    for rows in users.values():
        rows.sort(key=lambda x: (x[0], x[1]))
        seen = set()
        s = []
        for _, _, i in rows:
            if i not in seen:
                seen.add(i)
                s.append(i)
        seqs.append(s)
    return seqs, len(item_ids) + 1, order


def build_examples(seqs, max_len):
    """RecBole augmentation + leave-one-out. Returns dict split -> (item_seq, lens, target)."""
    out = {"train": ([], [], []), "valid": ([], [], []), "test": ([], [], [])}
    for s in seqs:
        ex = [(s[max(0, i - max_len):i], s[i]) for i in range(1, len(s))]
        if not ex:
            continue
        parts = ["train"] * len(ex)
        parts[-1] = "test"
        if len(ex) >= 2:
            parts[-2] = "valid"
        for (prefix, target), part in zip(ex, parts):
            seq_l, len_l, tgt_l = out[part]
            seq_l.append(prefix + [0] * (max_len - len(prefix)))
            len_l.append(len(prefix))
            tgt_l.append(target)
    res = {}
    for k, (a, b, c) in out.items():
        res[k] = (torch.tensor(a, dtype=torch.long).reshape(-1, max_len),
                  torch.tensor(b, dtype=torch.long), torch.tensor(c, dtype=torch.long))
    return res


@torch.no_grad()
def evaluate(model, split, device, k=10, chunk=4096):
    model.eval()
    seq, lens, tgt = split
    n = seq.shape[0]
    hr = ndcg = mrr = 0.0
    for s in range(0, n, chunk):
        item_seq = seq[s:s + chunk].to(device)
        scores = model.full_sort_predict(item_seq, lens[s:s + chunk].to(device))
        scores[:, 0] = -math.inf
        t = tgt[s:s + chunk].to(device)
        target_score = scores.gather(1, t.view(-1, 1))
        rank = (scores > target_score).sum(dim=1).double()
        hit = rank < k
        hr += hit.double().sum().item()
        ndcg += torch.where(hit, 1.0 / torch.log2(rank + 2.0), torch.zeros_like(rank)).sum().item()
        mrr += torch.where(hit, 1.0 / (rank + 1.0), torch.zeros_like(rank)).sum().item()
    model.train()
    return {f"hr@{k}": hr / n, f"ndcg@{k}": ndcg / n, f"mrr@{k}": mrr / n, "users": n}


def main():
    ap = argparse.ArgumentParser(description="PyTorch SASRec training peer (RecBole defaults)")
    ap.add_argument("--reviews", required=True, help="reviews_*.json(.gz), Amazon 2014 format")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop each epoch after N steps and extrapolate the epoch time")
    ap.add_argument("--eval", action="store_true", help="full-ranking valid/test metrics")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--max-seq-length", type=int, default=50)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        log("CUDA requested but not available")
        emit({"event": "skipped", "tool": "sasrec_train.py", "reason": "cuda not available"})
        return
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    seqs, n_items, n_rows = load_sequences(args.reviews)
    data = build_examples(seqs, args.max_seq_length)
    load_s = time.perf_counter() - t0
    n_train = data["train"][0].shape[0]
    n_inter = sum(len(s) for s in seqs)
    emit({"event": "data", "reviews": os.path.basename(args.reviews), "rows": n_rows,
          "users": len(seqs), "items": n_items - 1, "interactions": n_inter,
          "train_examples": n_train, "valid": data["valid"][0].shape[0],
          "test": data["test"][0].shape[0], "load_seconds": round(load_s, 3)})
    log(f"loaded {len(seqs)} users, {n_items - 1} items, {n_train} train examples "
        f"in {load_s:.1f}s")

    model = SASRec(n_items=n_items, max_seq_length=args.max_seq_length, n_layers=2, n_heads=2,
                   hidden_size=args.hidden_size, inner_size=4 * args.hidden_size,
                   hidden_dropout_prob=0.5, attn_dropout_prob=0.5, hidden_act="gelu",
                   layer_norm_eps=1e-12, initializer_range=0.02).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()

    seq_all, len_all, tgt_all = data["train"]
    bs = args.batch_size
    n_batches = (n_train + bs - 1) // bs
    g = torch.Generator()
    g.manual_seed(args.seed)
    best = None
    common = {"threads": torch.get_num_threads(), "device": args.device,
              "torch": torch.__version__, "batch_size": bs, "hidden_size": args.hidden_size}

    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n_train, generator=g)
        steps = n_batches if args.max_steps is None else min(n_batches, args.max_steps)
        total_loss = 0.0
        seen = 0
        step_times = []
        t_epoch = time.perf_counter()
        for b in range(steps):
            ts = time.perf_counter()
            idx = perm[b * bs:(b + 1) * bs]
            item_seq = seq_all[idx].to(device, non_blocking=True)
            lens = len_all[idx].to(device, non_blocking=True)
            tgt = tgt_all[idx].to(device, non_blocking=True)
            seq_output = model(item_seq, lens)
            logits = seq_output @ model.item_embedding.weight.t()
            loss = F.cross_entropy(logits, tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lv = loss.item()  # synchronises on CUDA
            total_loss += lv * idx.numel()
            seen += idx.numel()
            step_times.append(time.perf_counter() - ts)
            if (b + 1) % 10 == 0 or b + 1 == steps:
                log(f"epoch {epoch} step {b + 1}/{steps} loss {lv:.4f} "
                    f"{step_times[-1]:.2f}s/step")
        secs = time.perf_counter() - t_epoch
        rec = {"epoch": epoch, "steps": steps, "examples": seen, "seconds": round(secs, 3),
               "examples_per_s": round(seen / secs, 1), "loss": round(total_loss / seen, 5),
               "peak_rss_mb": round(peak_rss_mb(), 1)}
        rec.update(common)
        if steps < n_batches:
            later = step_times[1:] if len(step_times) > 1 else step_times
            per_step = sum(later) / len(later)
            rec.update(event="partial", extrapolated=True, steps_per_epoch=n_batches,
                       mean_step_seconds_excl_first=round(per_step, 4),
                       first_step_seconds=round(step_times[0], 4),
                       epoch_seconds_extrapolated=round(per_step * n_batches, 1))
        else:
            rec.update(event="epoch", extrapolated=False)
        emit(rec)
        if args.eval:
            t_ev = time.perf_counter()
            m = evaluate(model, data["valid"], device)
            m.update(event="valid", epoch=epoch, seconds=round(time.perf_counter() - t_ev, 3))
            emit(m)
            if best is None or m["ndcg@10"] > best[0]:
                best = (m["ndcg@10"], epoch,
                        {k: v.detach().clone() for k, v in model.state_dict().items()})
    if args.eval and best is not None:
        model.load_state_dict(best[2])
        t_ev = time.perf_counter()
        m = evaluate(model, data["test"], device)
        m.update(event="test", best_valid_epoch=best[1],
                 seconds=round(time.perf_counter() - t_ev, 3))
        emit(m)
    emit({"event": "done", "peak_rss_mb": round(peak_rss_mb(), 1)})


if __name__ == "__main__":
    main()
