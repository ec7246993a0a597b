/**
 * Full cross-entropy over an item table without the [tokens x items] logits: the loss of
 * crossEntropy(matmul(h, table^T), targets), computed block by block of items as in "Cut Your
 * Losses in Large-Vocabulary Language Models" (Wijmans et al. 2024).
 *
 * Forward, per block of B items: z = h @ table[j0:j0+B]^T ([T x B] scratch, one GEMM), then one
 * kernel merges the block's row log-sum-exp into a running lse [T] and picks the target's logit
 * when it falls in the block. Row loss = lse - z_target. Only lse [T] is kept for the backward.
 *
 * Backward, per block: z is recomputed by the same GEMM, one kernel turns it in place into
 * w_t (softmax - onehot) from the saved lse (w = the row losses' gradient, g/T under a mean),
 * and two GEMMs take dh += dz @ table_block and dtable_block = dz^T @ h. dtable's blocks are
 * disjoint, so each is written once.
 *
 * Memory: one [T x B] scratch at a time, plus [T] vectors; nothing grows with the number of items
 * but the table's own gradient. With one block of all items (the plain path of nextItemLoss) the
 * logits are kept from the forward pass instead and the backward skips the recomputing GEMM.
 * Where the backend can (`keepsCrossEntropyExp`), the forward kernel then leaves e^(z - max_r) in
 * place of the logits, and the backward turns them into the gradient with one multiply per logit
 * instead of a second exponential: the loss is the same to the bit, the gradient equal to float32
 * rounding (e^(z - max) e^(max - lse) against e^(z - lse)). Every column takes part, the padding
 * item 0 included, as in the plain path (and RecBole's SASRec CE, which scores the whole
 * embedding table).
 *
 * A backend may take that one-block path in one call each way (Backend.linearCrossEntropyKept:
 * the C kernels turn each band of rows' logits into exponentials while they are in cache, and
 * read the exponentials once in the backward), with the same bits as the separate calls; and the
 * blocks likewise (Backend.linearCrossEntropyBlocks: each band of rows' logits of a block scored
 * while in cache, the backward a KC slice of items at a time), so that no [T x B] scratch is
 * written either. In those fused calls alone, `products` "bf16" runs the three products on
 * bfloat16 operands (TrainConfig.ceProducts): a choice of precision, not the float32 bits.
 */
import { type Backend, gemmArgs } from "../backend.ts";
import { UsageError } from "../errors.ts";
import { empty, isGradEnabled, record, type Tensor } from "../tensor.ts";
import { mean } from "./reduce.ts";

/** "auto", 0 (the plain path: logits materialised) or the items per block. */
export type CeChunkSetting = "auto" | number;

/**
 * The precision of the products with the item table (TrainConfig.ceProducts): "fp32", or "bf16"
 * (operands rounded to bfloat16, sums in float32) where the backend's fused one-block path takes
 * it (Backend.productsBf16).
 */
export type CeProducts = "fp32" | "bf16";

/** Why `b` cannot run ceProducts=bf16, or null where it can. */
export function bf16Refusal(b: Backend): string | null {
  return b.productsBf16 ? null : `ceProducts=bf16 needs the native backend's C kernels on a CPU ` +
    `with AVX-512 BF16 (backend ${b.name} has no bf16 products)`;
}

/** Under "auto", plain CE runs while its logits [T x items] stay within this (256 MiB). */
export const CE_PLAIN_MAX_BYTES = 256 * 2 ** 20;
/** Under "auto", a block's [T x B] scratch stays within this (32 MiB). */
export const CE_BLOCK_BYTES = 32 * 2 ** 20;
/** Blocks are a multiple of this many items (GEMM tiles), unless the table is smaller. */
const BLOCK_ALIGN = 64;

/**
 * Items per block for `tokens` rows scored against `items` table rows, or 0 for the plain path.
 * "auto" keeps the plain path while its logits fit CE_PLAIN_MAX_BYTES (so small catalogs train
 * exactly as before) and otherwise sizes blocks to CE_BLOCK_BYTES; a positive number always
 * chunks with blocks of that many items; 0 always takes the plain path.
 */
export function ceBlockItems(tokens: number, items: number, setting: CeChunkSetting): number {
  if (setting === 0) return 0;
  if (setting !== "auto") return Math.max(1, Math.min(setting, items));
  if (tokens * items * 4 <= CE_PLAIN_MAX_BYTES) return 0;
  return budgetBlockItems(tokens, items);
}

/** The most items (a multiple of 64, at least 64) whose [tokens x B] block fits CE_BLOCK_BYTES. */
export function budgetBlockItems(tokens: number, items: number): number {
  const fit = Math.floor(CE_BLOCK_BYTES / (4 * Math.max(1, tokens)) / BLOCK_ALIGN) * BLOCK_ALIGN;
  return Math.min(items, Math.max(BLOCK_ALIGN, fit));
}

/**
 * Per-row cross-entropy [T] of the logits h @ table^T (h [T, d], table [N, d]) against int32
 * targets [T], computed in blocks of `blockItems` items (default: the "auto" block size). A
 * target outside [0, N) falls in no block and scores its row as lse - 0.
 */
export function linearCrossEntropyRows(
  h: Tensor,
  table: Tensor,
  targets: Tensor,
  blockItems = 0,
  products: CeProducts = "fp32",
): Tensor {
  if (h.rank !== 2 || table.rank !== 2 || h.shape[1] !== table.shape[1]) {
    throw new Error(`linearCrossEntropy: hidden [${h.shape}] against table [${table.shape}]`);
  }
  const [rows, d] = h.shape;
  const items = table.shape[0];
  if (targets.dtype !== "i32" || targets.size !== rows) {
    throw new Error(`linearCrossEntropy: targets must be int32 [${rows}]`);
  }
  const block = blockItems > 0 ? Math.min(blockItems, items) : budgetBlockItems(rows, items);
  const b = h.backend;
  const logits = (z: Tensor, j0: number, cols: number) =>
    b.gemm(gemmArgs(h.storage, table.storage, z.storage, rows, cols, d, {
      transB: true,
      bOffset: j0 * d,
    }));

  const bf16 = products === "bf16";
  const refused = bf16 ? bf16Refusal(b) : null;
  if (refused) throw new UsageError(refused);
  // The bf16 products over one block of all items run in the kept path's fused kernel (with a
  // gradient or without), over several blocks in the streamed one.
  const oneBlockBf16 = bf16 && block >= items;
  const lse = empty([rows]);
  const picked = empty([rows]);
  // One block holds every item: its logits are kept for the backward, which then turns them into
  // their gradient in place instead of computing them again (the plain path's memory and GEMMs).
  const keepLogits = block >= items && isGradEnabled() && (h.requiresGrad || table.requiresGrad);
  // Logits not kept: a backend that streams the blocks (the C kernels) scores each band of rows
  // while it is in cache, in one call each way, with the separate calls' bits (or bf16 products).
  const stream = {
    h: h.storage,
    table: table.storage,
    targets: targets.storage,
    lse: lse.storage,
    rows,
    items,
    d,
    block,
    bf16,
  };
  const streamed = !keepLogits && !oneBlockBf16 &&
    b.linearCrossEntropyBlocks?.({ ...stream, picked: picked.storage }) === true;
  if (bf16 && !oneBlockBf16 && !streamed) {
    throw new Error("linearCrossEntropy: the backend refused its bf16 products in item blocks");
  }
  const z = streamed ? null : empty([rows * block]);
  // Kept logits become their exponentials, shifted by each row's maximum (kept in `shift`).
  const shift = oneBlockBf16 || keepLogits && b.keepsCrossEntropyExp ? empty([rows]) : null;
  // A backend that fuses this path (the C kernels) does the product and the rows in one call.
  const kept = shift && z && {
    h: h.storage,
    table: table.storage,
    targets: targets.storage,
    z: z.storage,
    lse: lse.storage,
    shift: shift.storage,
    rows,
    items,
    d,
    bf16,
  };
  const fused = kept !== null &&
    b.linearCrossEntropyKept?.({ ...kept, picked: picked.storage }) === true;
  if (oneBlockBf16 && !fused) {
    throw new Error("linearCrossEntropy: the backend refused its bf16 products");
  }
  for (let j0 = 0; z && j0 < items && !fused; j0 += block) {
    const cols = Math.min(block, items - j0);
    logits(z, j0, cols);
    b.crossEntropyBlock(
      z.storage,
      targets.storage,
      lse.storage,
      picked.storage,
      rows,
      cols,
      j0,
      j0 === 0,
      shift?.storage,
    );
  }
  if (!keepLogits) {
    z?.dispose();
    shift?.dispose();
  }
  const out = empty([rows]);
  b.binary("sub", lse.storage, [1], picked.storage, [1], out.storage, [rows]);
  picked.dispose();

  return record(out, "linear_cross_entropy", [h, table], (g) => {
    const dh = h.requiresGrad ? empty(h.shape) : null;
    const dt = table.requiresGrad ? empty(table.shape) : null;
    const grads = { w: g.storage, dh: dh?.storage ?? null, dtable: dt?.storage ?? null };
    const fusedGrad = fused && b.linearCrossEntropyKeptGrad?.({ ...kept, ...grads }) === true;
    const streamedGrad = streamed &&
      b.linearCrossEntropyBlocksGrad?.({ ...stream, ...grads }) === true;
    if (bf16 && streamed && !streamedGrad) {
      throw new Error("linearCrossEntropy: the backend refused the backward of its bf16 products");
    }
    const dz = keepLogits ? z! : streamedGrad ? null : empty([rows * block]);
    for (let j0 = 0; dz && j0 < items && !fusedGrad; j0 += block) {
      const cols = Math.min(block, items - j0);
      if (!keepLogits) logits(dz, j0, cols);
      b.crossEntropyBlockGrad(
        dz.storage,
        targets.storage,
        lse.storage,
        g.storage,
        rows,
        cols,
        j0,
        shift?.storage,
      );
      if (dh) {
        b.gemm(gemmArgs(dz.storage, table.storage, dh.storage, rows, d, cols, {
          bOffset: j0 * d,
          beta: j0 === 0 ? 0 : 1,
        }));
      }
      if (dt) {
        b.gemm(gemmArgs(dz.storage, h.storage, dt.storage, cols, d, rows, {
          transA: true,
          cOffset: j0 * d,
        }));
      }
    }
    dz?.dispose();
    shift?.dispose();
    return [dh, dt];
  });
}

/**
 * Mean cross-entropy of h @ table^T against targets, in item blocks: the value and gradients of
 * crossEntropy(matmul(h, table, false, true), targets) to float32 rounding, without its
 * [T x N] logits. hidden [T, d], table [N, d], targets int32 [T].
 */
export function linearCrossEntropy(
  h: Tensor,
  table: Tensor,
  targets: Tensor,
  blockItems = 0,
  products: CeProducts = "fp32",
): Tensor {
  return mean(linearCrossEntropyRows(h, table, targets, blockItems, products));
}
