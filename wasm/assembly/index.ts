// Entry point of the kernel module: every export the wasm backend calls. Pointers are byte
// addresses in the imported shared memory; sizes and strides are in elements.
export { gemm, GEMM_SCRATCH_BYTES } from "./gemm";
export { unary, unaryGrad } from "./unary";
export { binary, reduceSum } from "./binary";
export { axpy, copy2d, fill32, permute, sumSquares } from "./memory_ops";
export {
  crossEntropyBlock,
  crossEntropyBlockGrad,
  layerNorm,
  layerNormGrad,
  maskedSoftmax,
  softmax,
  softmaxGrad,
} from "./rows";
export { modalityFusion, modalityFusionGrad } from "./fusion";
export { argmaxRows, gather, pick, pickGrad, rankRows, scatterAdd } from "./indexing";
export { dropout } from "./random";
export { adam } from "./adam";

/** End of the module's static data: the arena must start above it. */
export const HEAP_BASE: usize = __heap_base;
