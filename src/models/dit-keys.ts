// Key layouts of DiT weights: the official facebookresearch/DiT state_dict (ours) and the
// diffusers Transformer2DModel layout (transformer/diffusion_pytorch_model.safetensors), which
// splits qkv, renames layers and copies the timestep/label embedders into every block.
import { cat } from '../torch/functions';
import { Tensor } from '../torch/tensor';

export type DiTLayout = 'official' | 'diffusers';

/** Which layout a state dict uses (after stripping DDP's 'module.' prefix). */
export function detectLayout(keys: Iterable<string>): DiTLayout | null {
  const set = new Set(keys);
  if (set.has('x_embedder.proj.weight')) return 'official';
  if (set.has('pos_embed.proj.weight') && [...set].some((k) => k.startsWith('transformer_blocks.'))) return 'diffusers';
  return null;
}

/** Drops the 'module.' prefix that DistributedDataParallel checkpoints carry. */
export function stripModulePrefix(sd: Map<string, Tensor>): Map<string, Tensor> {
  if (![...sd.keys()].every((k) => k.startsWith('module.'))) return sd;
  return new Map([...sd].map(([k, v]) => [k.slice('module.'.length), v]));
}

function blockCount(keys: Iterable<string>, prefix: string): number {
  let n = 0;
  const re = new RegExp(`^${prefix.replace('.', '\\.')}\\.(\\d+)\\.`);
  for (const k of keys) {
    const m = re.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

const BLOCK_RENAMES: [string, string][] = [
  ['adaLN_modulation.1', 'norm1.linear'],
  ['attn.proj', 'attn1.to_out.0'],
  ['mlp.fc1', 'ff.net.0.proj'],
  ['mlp.fc2', 'ff.net.2'],
];

const TOP_RENAMES: [string, string][] = [
  ['x_embedder.proj', 'pos_embed.proj'],
  ['final_layer.adaLN_modulation.1', 'proj_out_1'],
  ['final_layer.linear', 'proj_out_2'],
];

const EMBEDDER_RENAMES: [string, string][] = [
  ['t_embedder.mlp.0', 'norm1.emb.timestep_embedder.linear_1'],
  ['t_embedder.mlp.2', 'norm1.emb.timestep_embedder.linear_2'],
  ['y_embedder.embedding_table', 'norm1.emb.class_embedder.embedding_table'],
];

function need(sd: Map<string, Tensor>, key: string): Tensor {
  const t = sd.get(key);
  if (!t) throw new Error(`DiT weights in the diffusers layout lack '${key}'`);
  return t;
}

/**
 * Diffusers layout -> official keys. The per-block embedder copies are identical in converted
 * checkpoints; block 0's are used. pos_embed comes from `pos_embed.pos_embed` when present.
 */
export function diffusersToOfficial(sd: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const depth = blockCount(sd.keys(), 'transformer_blocks');
  const pos = sd.get('pos_embed.pos_embed');
  if (pos) out.set('pos_embed', pos);
  for (const [ours, theirs] of TOP_RENAMES) {
    for (const p of ['weight', 'bias']) out.set(`${ours}.${p}`, need(sd, `${theirs}.${p}`));
  }
  for (const [ours, theirs] of EMBEDDER_RENAMES) {
    for (const p of ours.startsWith('y_') ? ['weight'] : ['weight', 'bias']) {
      out.set(`${ours}.${p}`, need(sd, `transformer_blocks.0.${theirs}.${p}`));
    }
  }
  for (let d = 0; d < depth; d++) {
    const b = `transformer_blocks.${d}`;
    for (const p of ['weight', 'bias']) {
      out.set(`blocks.${d}.attn.qkv.${p}`,
        cat(['to_q', 'to_k', 'to_v'].map((n) => need(sd, `${b}.attn1.${n}.${p}`)), 0));
      for (const [ours, theirs] of BLOCK_RENAMES) out.set(`blocks.${d}.${ours}.${p}`, need(sd, `${b}.${theirs}.${p}`));
    }
  }
  return out;
}

/** Official keys -> diffusers layout (as diffusers' conversion script writes it). */
export function officialToDiffusers(sd: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const depth = blockCount(sd.keys(), 'blocks');
  const get = (k: string): Tensor => {
    const t = sd.get(k);
    if (!t) throw new Error(`DiT weights lack '${k}'`);
    return t;
  };
  for (const [ours, theirs] of TOP_RENAMES) {
    for (const p of ['weight', 'bias']) out.set(`${theirs}.${p}`, get(`${ours}.${p}`));
  }
  const pos = sd.get('pos_embed');
  if (pos) out.set('pos_embed.pos_embed', pos);
  for (let d = 0; d < depth; d++) {
    const b = `transformer_blocks.${d}`;
    for (const [ours, theirs] of EMBEDDER_RENAMES) {
      for (const p of ours.startsWith('y_') ? ['weight'] : ['weight', 'bias']) out.set(`${b}.${theirs}.${p}`, get(`${ours}.${p}`));
    }
    for (const p of ['weight', 'bias']) {
      const [q, k, v] = get(`blocks.${d}.attn.qkv.${p}`).chunk(3, 0);
      out.set(`${b}.attn1.to_q.${p}`, q);
      out.set(`${b}.attn1.to_k.${p}`, k);
      out.set(`${b}.attn1.to_v.${p}`, v);
      for (const [ours, theirs] of BLOCK_RENAMES) out.set(`${b}.${theirs}.${p}`, get(`blocks.${d}.${ours}.${p}`));
    }
  }
  return out;
}
