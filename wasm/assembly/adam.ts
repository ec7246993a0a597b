// Adam / AdamW step, in place on p, m, v (torch.optim semantics, float32 arithmetic).

/**
 * m = b1 m + (1 - b1) g', v = b2 v + (1 - b2) g'^2, p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
 * with g' = g + wd p (Adam, L2) or, decoupled (AdamW), g' = g and p *= 1 - lr wd first.
 */
export function adam(
  p: usize,
  g: usize,
  m: usize,
  v: usize,
  n: i32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weightDecay: f32,
  decoupled: bool,
  biasCorrection1: f32,
  biasCorrection2: f32,
): void {
  const vb1 = f32x4.splat(beta1);
  const vb1c = f32x4.splat(1 - beta1);
  const vb2 = f32x4.splat(beta2);
  const vb2c = f32x4.splat(1 - beta2);
  const vstep = f32x4.splat(lr / biasCorrection1);
  const vsq2 = f32x4.splat(Mathf.sqrt(biasCorrection2));
  const veps = f32x4.splat(eps);
  const vwd = f32x4.splat(weightDecay);
  const vdecay = f32x4.splat(1 - lr * weightDecay);
  const useL2 = !decoupled && weightDecay != 0;
  const useDecay = decoupled && weightDecay != 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    let pv = v128.load(p + o);
    let gv = v128.load(g + o);
    if (useL2) gv = f32x4.add(gv, f32x4.mul(vwd, pv));
    if (useDecay) pv = f32x4.mul(pv, vdecay);
    const mv = f32x4.add(f32x4.mul(vb1, v128.load(m + o)), f32x4.mul(vb1c, gv));
    const vv = f32x4.add(f32x4.mul(vb2, v128.load(v + o)), f32x4.mul(vb2c, f32x4.mul(gv, gv)));
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vv), vsq2), veps);
    v128.store(m + o, mv);
    v128.store(v + o, vv);
    v128.store(p + o, f32x4.sub(pv, f32x4.mul(vstep, f32x4.div(mv, denom))));
  }
  const step = lr / biasCorrection1;
  const sq2 = Mathf.sqrt(biasCorrection2);
  for (; i < n; i++) {
    const o = <usize>i << 2;
    let pv = load<f32>(p + o);
    let gv = load<f32>(g + o);
    if (useL2) gv = gv + weightDecay * pv;
    if (useDecay) pv = pv * (1 - lr * weightDecay);
    const mv = beta1 * load<f32>(m + o) + (1 - beta1) * gv;
    const vv = beta2 * load<f32>(v + o) + (1 - beta2) * (gv * gv);
    const denom = Mathf.sqrt(vv) / sq2 + eps;
    store<f32>(m + o, mv);
    store<f32>(v + o, vv);
    store<f32>(p + o, pv - step * (mv / denom));
  }
}
