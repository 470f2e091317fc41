// DiT-ControlNet: the ControlNet-Transformer design (PixArt-δ) for a frozen DiT. A trainable copy
// of the first N DiT blocks runs beside the frozen ones; the condition image is patchified like the
// input by a zero-initialised patch embedding and added to the copy's input tokens; after each
// copied block a zero-initialised linear layer maps its tokens onto the output of the frozen block
// of the same index. Both zero layers make the model exactly the base DiT at initialisation, and the
// base's own modules (embedders, blocks, final layer) are driven from this forward, unchanged.
//
// Files: the base DiT's state-dict names plus `controlnet.` ones (controlnet.cond_embedder.proj.weight,
// controlnet.blocks.0..., controlnet.zero_linears.0.weight), as safetensors with an X.json config.
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { LoadReport } from '../torch/nn/module';
import { loadSafetensors, saveSafetensors } from '../torch/serialization';
import { writeFileAtomic } from '../tuning/write-atomic';
import { configFromModelArgs, DiT, DiTBlock, DiTConfig, ForwardOptions, modelArgs, PatchEmbed } from './dit';
import { siblingConfig } from './dit-io';
import { readJsonObject } from './json-file';

const { nn } = torch;

export interface ControlNetConfig {
  /** How many leading DiT blocks get a trainable copy (1..depth). */
  numBlocks: number;
  /** Channels of the condition image. */
  conditionChannels: number;
  /** The condition's name (e.g. 'canny'), recorded so samplers can extract it again; null if unnamed. */
  condition: string | null;
}

export interface ControlForwardOptions extends ForwardOptions {
  /** [N, conditionChannels, H, W] in [-1, 1]; absent or null: the control branch is off (the base model). */
  condition?: Tensor | null;
  /** Multiplies the branch's contributions (1 as trained; 0 is the base model). */
  controlScale?: number;
}

function checkControlConfig(base: DiTConfig, c: ControlNetConfig): void {
  if (!Number.isInteger(c.numBlocks) || c.numBlocks < 1 || c.numBlocks > base.depth) {
    throw new Error(`DiT-ControlNet: numBlocks must be an integer in 1..${base.depth} (the base depth), got ${c.numBlocks}`);
  }
  if (!Number.isInteger(c.conditionChannels) || c.conditionChannels < 1) {
    throw new Error(`DiT-ControlNet: conditionChannels must be a positive integer, got ${c.conditionChannels}`);
  }
}

function zeroInit(m: torch.nn.Linear | torch.nn.Conv2d): void {
  torch.noGrad(() => {
    nn.init.zeros_(m.weight);
    if (m.bias) nn.init.zeros_(m.bias);
  });
}

/** The trainable branch: condition patch embedding, copied blocks, zero linears. */
export class ControlBranch extends nn.Module {
  readonly cond_embedder: PatchEmbed;
  readonly blocks: torch.nn.ModuleList<DiTBlock>;
  readonly zero_linears: torch.nn.ModuleList<torch.nn.Linear>;
  constructor(base: DiTConfig, c: ControlNetConfig) {
    super();
    this.cond_embedder = this.registerModule('cond_embedder', new PatchEmbed(base.inputSize, base.patchSize, c.conditionChannels, base.hiddenSize));
    this.blocks = this.registerModule('blocks', new nn.ModuleList(Array.from({ length: c.numBlocks },
      () => new DiTBlock(base.hiddenSize, base.numHeads, base.mlpRatio, false))));
    this.zero_linears = this.registerModule('zero_linears', new nn.ModuleList(Array.from({ length: c.numBlocks },
      () => new nn.Linear(base.hiddenSize, base.hiddenSize, true))));
    zeroInit(this.cond_embedder.proj);
    for (const l of this.zero_linears) zeroInit(l);
  }
}

/**
 * A DiT with a control branch. `forward` without a condition is the base DiT; with one, the branch
 * adds its residuals. Only the branch trains when built with fromBase (the base is frozen).
 */
export class DiTControlNet extends DiT {
  readonly control: Readonly<ControlNetConfig>;
  readonly controlnet: ControlBranch;

  constructor(config: DiTConfig, control: ControlNetConfig) {
    super(config, { initialize: false });
    checkControlConfig(this.config, control);
    this.control = Object.freeze({ ...control });
    this.controlnet = this.registerModule('controlnet', new ControlBranch(this.config, control));
  }

  /**
   * A ControlNet on a pretrained DiT: the base weights copied in and frozen, the branch's blocks
   * initialised from the base's first numBlocks blocks, its two zero layers at zero.
   */
  static fromBase(base: DiT, control: ControlNetConfig): DiTControlNet {
    if (base.config.useGamma) throw new Error('DiT-ControlNet: a base with DiffFit gammas is not supported (merge or drop them first)');
    const m = new DiTControlNet(base.config, control);
    m.to(base.pos_embed.device);
    torch.noGrad(() => {
      m.loadStateDict(new Map([...base.stateDict(), ...m.controlnet.stateDict('controlnet.')]), { what: 'the base DiT' });
      for (let i = 0; i < control.numBlocks; i++) {
        const own = new Map(m.controlnet.blocks.at(i).namedParameters());
        for (const [name, p] of base.blocks.at(i).namedParameters()) own.get(name)!.copy_(p);
      }
    });
    m.freezeBase();
    return m;
  }

  /** Freezes everything but the control branch (ControlNet trains the branch only). */
  freezeBase(): this {
    this.requiresGrad_(false);
    this.controlnet.requiresGrad_(true);
    return this;
  }

  override forward(x: Tensor, t: Tensor, y: Tensor, o: ControlForwardOptions = {}): Tensor {
    const cond = o.condition ?? null;
    if (!cond) return super.forward(x, t, y, o);
    const [n, ch, hh, ww] = cond.shape;
    if (cond.ndim !== 4 || n !== x.shape[0] || ch !== this.control.conditionChannels || hh !== x.shape[2] || ww !== x.shape[3]) {
      throw new Error(`DiT-ControlNet: the condition must be [${x.shape[0]}, ${this.control.conditionChannels}, ${x.shape[2]}, ${x.shape[3]}], ` +
        `got [${cond.shape.join(', ')}]`);
    }
    const scale = o.controlScale ?? 1;
    return torch.scope(() => {
      let h = this.x_embedder.forward(x).add(this.pos_embed); // [N, T, D]
      const c = this.t_embedder.forward(t).add(this.y_embedder.forward(y, this.training, o.forceDropIds));
      // The copy starts from the same tokens, plus the condition's patches.
      let hc = h.add(this.controlnet.cond_embedder.forward(cond));
      for (const [i, block] of this.blocks.items.entries()) {
        h = block.forward(h, c);
        if (i < this.control.numBlocks) {
          hc = this.controlnet.blocks.at(i).forward(hc, c);
          const residual = this.controlnet.zero_linears.at(i).forward(hc);
          h = h.add(scale === 1 ? residual : residual.mul(scale));
        }
      }
      return this.unpatchify(this.final_layer.forward(h, c));
    });
  }

  /** The branch's tensors alone, under their file names (controlnet....). */
  controlStateDict(): Map<string, Tensor> {
    return this.controlnet.stateDict('controlnet.');
  }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

const MODEL_NAME = 'DiT-ControlNet';

/** The X.json of a saved DiT-ControlNet. */
export function controlNetConfigJson(m: DiTControlNet): Record<string, unknown> {
  return {
    model: MODEL_NAME,
    model_args: modelArgs(m.config),
    controlnet: { num_blocks: m.control.numBlocks, condition_channels: m.control.conditionChannels, condition: m.control.condition },
  };
}

/** Writes weights (base + controlnet.*) as safetensors and the config as X.json beside them, both atomically. */
export function saveDiTControlNet(file: string, m: DiTControlNet, metadata: Record<string, string> = {}): void {
  if (!file.endsWith('.safetensors')) throw new Error(`saveDiTControlNet: '${file}' should end in .safetensors`);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const config = controlNetConfigJson(m);
  saveSafetensors(file, m.stateDict(), { ...metadata, config: JSON.stringify(config) });
  writeFileAtomic(file.replace(/\.safetensors$/, '.json'), JSON.stringify(config, null, 2) + '\n');
}

/** Reads a DiT-ControlNet X.json: the base's constructor arguments and the branch's settings. */
export function readControlNetConfig(file: string): { base: DiTConfig; control: ControlNetConfig } {
  const json = readJsonObject(file);
  if (json.model !== MODEL_NAME) throw new Error(`${file}: 'model' must be "${MODEL_NAME}", got ${JSON.stringify(json.model)}`);
  if (typeof json.model_args !== 'object' || json.model_args === null) throw new Error(`${file}: 'model_args' must be an object`);
  const cn = json.controlnet as Record<string, unknown> | undefined;
  if (typeof cn !== 'object' || cn === null) throw new Error(`${file}: 'controlnet' must be an object {num_blocks, condition_channels, condition}`);
  const int = (k: string): number => {
    const v = cn[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${file}: 'controlnet.${k}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const condition = cn.condition ?? null;
  if (condition !== null && typeof condition !== 'string') throw new Error(`${file}: 'controlnet.condition' must be a string or null`);
  let base: DiTConfig;
  try {
    base = configFromModelArgs(json.model_args as Record<string, unknown>);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  return { base, control: { numBlocks: int('num_blocks'), conditionChannels: int('condition_channels'), condition } };
}

/** Loads a saved DiT-ControlNet (strictly; nothing is executed), base frozen. */
export function loadDiTControlNet(file: string, o: { configFile?: string; device?: torch.Device } = {}): { model: DiTControlNet; report: LoadReport } {
  const configFile = o.configFile ?? siblingConfig(file);
  if (!configFile) throw new Error(`${file}: no ${path.basename(file).replace(/\.safetensors$/, '.json')} beside it (the DiT-ControlNet config)`);
  const { base, control } = readControlNetConfig(configFile);
  const model = new DiTControlNet(base, control);
  const sd = loadSafetensors(file, { device: o.device });
  if (o.device) model.to(o.device);
  if (!sd.has('pos_embed')) sd.set('pos_embed', model.pos_embed);
  const report = model.loadStateDict(sd, { what: file });
  for (const [k, t] of sd) if (k !== 'pos_embed' || t !== model.pos_embed) t.dispose();
  return { model: model.freezeBase(), report };
}
