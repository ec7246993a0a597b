/**
 * Item attributes as embeddings for the side-information models (NOVA, DIF-SR): the item's
 * category (a learned table, as the references embed categorical item fields) or its frozen text
 * features (a Linear projection, as the references project dense fields).
 */
import { UsageError } from "../errors.ts";
import { Embedding, Linear } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { keep, type Tensor, tensor } from "../tensor.ts";
import type { ItemSide } from "./item_side.ts";

export const SIDE_ATTRIBUTES = ["category", "text"] as const;
export type SideAttribute = typeof SIDE_ATTRIBUTES[number];

/** One UsageError line when the dataset lacks an attribute the config asks for. */
export function checkAttributes(model: string, attrs: readonly string[], items: ItemSide): void {
  const key = `${model}Attributes`;
  if (new Set(attrs).size !== attrs.length) {
    throw new UsageError(`${model}: ${key} lists an attribute twice: ${attrs.join(", ")}`);
  }
  for (const a of attrs) {
    if (a === "category" && items.numCategories < 2) {
      throw new UsageError(
        `${model}: ${key} asks for "category" but the dataset has no item categories`,
      );
    }
    if (a === "text" && !items.text) {
      throw new UsageError(
        `${model}: ${key} asks for "text" but the dataset has no item text features ` +
          `(set ${key}=category, or add item metadata or precomputed text features)`,
      );
    }
  }
}

/** An attribute's embedding of every item in a [B, L] batch: [B, L, width]. */
export class AttributeEmbedding extends Module {
  readonly embedding: Embedding | null = null;
  readonly projection: Linear | null = null;
  /** Frozen text rows [(numItems + 1), textDim]: data, not a parameter. */
  readonly #text: Tensor | null = null;

  constructor(
    readonly attribute: SideAttribute,
    readonly width: number,
    readonly items: ItemSide,
    rng: Rng,
    std: number,
    /**
     * The DIF-SR reference's behaviour: its attribute tables sit outside the module tree, so they
     * keep torch's N(0, 1) init and are never trained. Frozen tables get no gradient.
     */
    readonly frozen = false,
  ) {
    super();
    if (frozen) std = 1;
    if (attribute === "category") {
      this.embedding = this.child("embedding", new Embedding(items.numCategories, width, rng, std));
    } else {
      const text = items.text!;
      this.#text = keep(tensor(text.data, [items.numItems + 1, text.dim]));
      this.projection = this.child("projection", new Linear(text.dim, width, rng, { std }));
    }
    if (frozen) { for (const p of this.parameters()) p.requiresGrad = false; }
  }

  /** Category index of every batch slot (padding -> 0). */
  categories(seq: Int32Array): Int32Array {
    const cat = this.items.itemCategory;
    const out = new Int32Array(seq.length);
    for (let i = 0; i < seq.length; i++) out[i] = cat[seq[i]];
    return out;
  }

  /** Every item's attribute embedding [(numItems + 1), width] (for exported graphs). */
  itemTable(): Tensor {
    const n = this.items.numItems + 1;
    const all = Int32Array.from({ length: n }, (_, i) => i);
    return op.reshape(this.forward(all, 1, n), [n, this.width]);
  }

  forward(seq: Int32Array, size: number, len: number): Tensor {
    if (this.embedding) {
      return this.embedding.forward(tensor(this.categories(seq), [size, len], "i32"));
    }
    // Gather the sequence's rows before projecting: B*L rows rather than every item.
    const rows = op.embedding(this.#text!, tensor(seq, [size, len], "i32"));
    return this.projection!.forward(rows);
  }
}
