/**
 * Module: a named tree of parameters (torch `nn.Module` style), so checkpoints use stable names
 * such as `trm_encoder.layer.0.multi_head_attention.query.weight`.
 */
import { keep, type Tensor } from "../tensor.ts";

export abstract class Module {
  readonly #params = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();
  training = true;

  /** Registers a trainable parameter (kept across memory scopes). */
  protected param(name: string, t: Tensor): Tensor {
    keep(t);
    t.requiresGrad = true;
    this.#params.set(name, t);
    return t;
  }

  /** Registers a sub-module under `name`. */
  protected child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Parameters with dotted names, in registration order (deterministic). */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#params) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Sets training mode (dropout on) recursively. */
  train(on = true): this {
    this.training = on;
    for (const c of this.#children.values()) c.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }
}

/** An ordered list of modules registered as `0`, `1`, ... (torch ModuleList naming). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items.map((m, i) => this.child(String(i), m));
  }
}
