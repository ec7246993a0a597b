/**
 * The layer graph of a Keras model as a TF.js model.json stores it (`modelTopology`): a
 * functional `Model` (layers with `inbound_nodes`, `input_layers`, `output_layers`) or a
 * `Sequential` stack, in the Keras 2 serialization that tf.loadLayersModel reads.
 *
 * Each layer is called once (shared layers and nested models are not supported) and has one
 * output tensor, so a layer's name is also the name of its output.
 */

export interface KerasLayer {
  name: string;
  className: string;
  config: Record<string, unknown>;
  /** Names of the layers whose outputs this layer reads, in argument order. */
  inbound: string[];
}

export interface KerasGraph {
  /** Layers in an order where every layer comes after its inputs. */
  layers: KerasLayer[];
  input: string;
  output: string;
}

/** A model the converter cannot read; `message` is one line naming the layer when there is one. */
export class KerasModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KerasModelError";
  }
}

type Json = Record<string, unknown>;

function inboundNames(layer: Json): string[] {
  const nodes = (layer.inbound_nodes ?? []) as unknown[];
  if (nodes.length === 0) return [];
  if (nodes.length > 1) {
    throw new KerasModelError(
      `layer "${layer.name}" (${layer.class_name}) is called ${nodes.length} times; ` +
        "shared layers are not supported",
    );
  }
  const node = nodes[0];
  if (!Array.isArray(node)) {
    throw new KerasModelError(
      `layer "${layer.name}": inbound node format is not the Keras 2 one tf.js reads`,
    );
  }
  return node.map((ref) => {
    const [name, nodeIndex, tensorIndex] = ref as [string, number, number];
    if (nodeIndex !== 0 || tensorIndex !== 0) {
      throw new KerasModelError(
        `layer "${layer.name}" reads output ${tensorIndex} of call ${nodeIndex} of "${name}"; ` +
          "only single-output layers called once are supported",
      );
    }
    return name;
  });
}

/** Parses `modelTopology` (or its `model_config`, or the bare config) into a layer graph. */
export function parseKerasTopology(topology: unknown): KerasGraph {
  let cfg = topology as Json;
  if (cfg && typeof cfg === "object" && "model_config" in cfg) cfg = cfg.model_config as Json;
  if (!cfg || typeof cfg !== "object" || typeof cfg.class_name !== "string") {
    throw new KerasModelError("not a Keras model topology (no class_name)");
  }
  const className = cfg.class_name;
  const config = cfg.config as Json | Json[];
  if (className === "Sequential") return sequential(config);
  if (className !== "Model" && className !== "Functional") {
    throw new KerasModelError(`unsupported model class ${className}`);
  }
  const c = config as Json;
  const raw = (c.layers ?? []) as Json[];
  const layers: KerasLayer[] = raw.map((l) => ({
    name: String(l.name ?? (l.config as Json)?.name),
    className: String(l.class_name),
    config: (l.config ?? {}) as Json,
    inbound: inboundNames(l),
  }));
  const ins = (c.input_layers ?? []) as [string, number, number][];
  const outs = (c.output_layers ?? []) as [string, number, number][];
  if (ins.length !== 1 || outs.length !== 1) {
    throw new KerasModelError(
      `the model has ${ins.length} inputs and ${outs.length} outputs; one of each is supported`,
    );
  }
  return { layers: topological(layers), input: ins[0][0], output: outs[0][0] };
}

function sequential(config: Json | Json[]): KerasGraph {
  const raw = (Array.isArray(config) ? config : (config.layers ?? [])) as Json[];
  const layers: KerasLayer[] = [];
  for (const l of raw) {
    const cfg = (l.config ?? {}) as Json;
    const prev = layers.at(-1);
    if (!prev) {
      if (l.class_name === "InputLayer") {
        layers.push({ name: String(cfg.name), className: "InputLayer", config: cfg, inbound: [] });
        continue;
      }
      if (!cfg.batch_input_shape) {
        throw new KerasModelError("a Sequential model needs batch_input_shape on its first layer");
      }
      layers.push({
        name: "input",
        className: "InputLayer",
        config: { batch_input_shape: cfg.batch_input_shape },
        inbound: [],
      });
    }
    layers.push({
      name: String(cfg.name),
      className: String(l.class_name),
      config: cfg,
      inbound: [layers.at(-1)!.name],
    });
  }
  if (layers.length === 0) throw new KerasModelError("the Sequential model has no layers");
  return { layers, input: layers[0].name, output: layers.at(-1)!.name };
}

function topological(layers: KerasLayer[]): KerasLayer[] {
  const byName = new Map<string, KerasLayer>();
  for (const l of layers) {
    if (byName.has(l.name)) throw new KerasModelError(`two layers are named "${l.name}"`);
    byName.set(l.name, l);
  }
  const done = new Set<string>();
  const order: KerasLayer[] = [];
  const visit = (l: KerasLayer, path: Set<string>) => {
    if (done.has(l.name)) return;
    if (path.has(l.name)) throw new KerasModelError(`layer "${l.name}" is part of a cycle`);
    path.add(l.name);
    for (const i of l.inbound) {
      const src = byName.get(i);
      if (!src) throw new KerasModelError(`layer "${l.name}" reads unknown layer "${i}"`);
      visit(src, path);
    }
    path.delete(l.name);
    done.add(l.name);
    order.push(l);
  };
  for (const l of layers) visit(l, new Set());
  return order;
}

/** Layers of a classification head: walking back over them from the output finds the features. */
const HEAD_LAYERS = new Set([
  "Dense",
  "Dropout",
  "Activation",
  "Softmax",
  "AlphaDropout",
  "GaussianDropout",
  "GaussianNoise",
]);

/**
 * The layer whose output is the model's features: walking back from the output over the
 * trailing Dense / Dropout / Activation layers (the classifier head) to the first other layer.
 */
export function featureLayer(graph: KerasGraph): string {
  const byName = new Map(graph.layers.map((l) => [l.name, l]));
  let cur = byName.get(graph.output)!;
  while (HEAD_LAYERS.has(cur.className) && cur.inbound.length === 1) {
    cur = byName.get(cur.inbound[0])!;
  }
  if (cur.className === "InputLayer") return graph.output;
  return cur.name;
}
