/** All differentiable ops. Models import from here, never from a backend. */
export * from "./elementwise.ts";
export * from "./matmul.ts";
export * from "./reduce.ts";
export * from "./shape.ts";
export * from "./nn.ts";
export * from "./linear_ce.ts";
export * from "./attention.ts";
export * from "./dft.ts";
export { broadcastShapes, sumToShape } from "./broadcast.ts";
