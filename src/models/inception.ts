// The FID Inception-v3: the TensorFlow-ported network of pytorch-fid (mseitzer/pytorch-fid,
// fid_inception_v3 + InceptionV3 with output block 3), whose pool3 features define FID as
// reported in papers. It is torchvision's Inception3 with pytorch-fid's FIDInceptionA/C/E_1/E_2
// blocks, which differ from torchvision's only in pooling (TF excluded the padding from the
// branch average pools, and Mixed_7c pools by max). Parameter names equal the state_dict keys of
// fid_inception_v3(), which are those of the published pt_inception-2015-12-05-6726825d.pth.
import * as torch from '../torch';
import { Tensor } from '../torch';

const { nn, F } = torch;


/** TF's batch-norm epsilon, which the ported weights were made with (torchvision's BasicConv2d). */
const BN_EPS = 0.001;

/** The features are pool3, the 2048 channels after Mixed_7c averaged over space. */
export const FID_FEATURE_DIM = 2048;
/** The input resolution of the network; pytorch-fid resizes every image to it. */
export const FID_INPUT_SIZE = 299;

type Pair = number | [number, number];


/** Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU, as torchvision's BasicConv2d. */
class BasicConv2d extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  readonly bn: torch.nn.BatchNorm2d;
  constructor(inChannels: number, outChannels: number, kernel: Pair, o: { stride?: Pair; padding?: Pair } = {}) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(inChannels, outChannels, kernel, { ...o, bias: false }));
    this.bn = this.registerModule('bn', new nn.BatchNorm2d(outChannels, BN_EPS));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.bn.forward(this.conv.forward(x)).relu());
  }
}

/** 3x3 stride-1 average pool that divides by the in-image count only (TF's padding='SAME'). */
function averagePoolNoPad(x: Tensor): Tensor {
  return F.avgPool2d(x, 3, { stride: 1, padding: 1, countIncludePad: false });
}

/** Mixed_5b/c/d: torchvision's InceptionA with the padding excluded from the pool branch. */
class FidInceptionA extends nn.Module {
  readonly branch1x1: BasicConv2d;
  readonly branch5x5_1: BasicConv2d;
  readonly branch5x5_2: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  constructor(inChannels: number, poolFeatures: number) {
    super();
    this.branch1x1 = this.registerModule('branch1x1', new BasicConv2d(inChannels, 64, 1));
    this.branch5x5_1 = this.registerModule('branch5x5_1', new BasicConv2d(inChannels, 48, 1));
    this.branch5x5_2 = this.registerModule('branch5x5_2', new BasicConv2d(48, 64, 5, { padding: 2 }));
    this.branch3x3dbl_1 = this.registerModule('branch3x3dbl_1', new BasicConv2d(inChannels, 64, 1));
    this.branch3x3dbl_2 = this.registerModule('branch3x3dbl_2', new BasicConv2d(64, 96, 3, { padding: 1 }));
    this.branch3x3dbl_3 = this.registerModule('branch3x3dbl_3', new BasicConv2d(96, 96, 3, { padding: 1 }));
    this.branch_pool = this.registerModule('branch_pool', new BasicConv2d(inChannels, poolFeatures, 1));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => torch.cat([
      this.branch1x1.forward(x),
      this.branch5x5_2.forward(this.branch5x5_1.forward(x)),
      this.branch3x3dbl_3.forward(this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x))),
      this.branch_pool.forward(averagePoolNoPad(x)),
    ], 1));
  }
}

/** Mixed_6a: torchvision's InceptionB (unchanged by pytorch-fid). */
class InceptionB extends nn.Module {
  readonly branch3x3: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  constructor(inChannels: number) {
    super();
    this.branch3x3 = this.registerModule('branch3x3', new BasicConv2d(inChannels, 384, 3, { stride: 2 }));
    this.branch3x3dbl_1 = this.registerModule('branch3x3dbl_1', new BasicConv2d(inChannels, 64, 1));
    this.branch3x3dbl_2 = this.registerModule('branch3x3dbl_2', new BasicConv2d(64, 96, 3, { padding: 1 }));
    this.branch3x3dbl_3 = this.registerModule('branch3x3dbl_3', new BasicConv2d(96, 96, 3, { stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => torch.cat([
      this.branch3x3.forward(x),
      this.branch3x3dbl_3.forward(this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x))),
      F.maxPool2d(x, 3, { stride: 2 }),
    ], 1));
  }
}

/** Mixed_6b-e: torchvision's InceptionC (factorised 7x7) with the padding excluded from the pool branch. */
class FidInceptionC extends nn.Module {
  readonly branch1x1: BasicConv2d;
  readonly branch7x7_1: BasicConv2d;
  readonly branch7x7_2: BasicConv2d;
  readonly branch7x7_3: BasicConv2d;
  readonly branch7x7dbl_1: BasicConv2d;
  readonly branch7x7dbl_2: BasicConv2d;
  readonly branch7x7dbl_3: BasicConv2d;
  readonly branch7x7dbl_4: BasicConv2d;
  readonly branch7x7dbl_5: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  constructor(inChannels: number, c7: number) {
    super();
    const row = { padding: [0, 3] as [number, number] };
    const col = { padding: [3, 0] as [number, number] };
    this.branch1x1 = this.registerModule('branch1x1', new BasicConv2d(inChannels, 192, 1));
    this.branch7x7_1 = this.registerModule('branch7x7_1', new BasicConv2d(inChannels, c7, 1));
    this.branch7x7_2 = this.registerModule('branch7x7_2', new BasicConv2d(c7, c7, [1, 7], row));
    this.branch7x7_3 = this.registerModule('branch7x7_3', new BasicConv2d(c7, 192, [7, 1], col));
    this.branch7x7dbl_1 = this.registerModule('branch7x7dbl_1', new BasicConv2d(inChannels, c7, 1));
    this.branch7x7dbl_2 = this.registerModule('branch7x7dbl_2', new BasicConv2d(c7, c7, [7, 1], col));
    this.branch7x7dbl_3 = this.registerModule('branch7x7dbl_3', new BasicConv2d(c7, c7, [1, 7], row));
    this.branch7x7dbl_4 = this.registerModule('branch7x7dbl_4', new BasicConv2d(c7, c7, [7, 1], col));
    this.branch7x7dbl_5 = this.registerModule('branch7x7dbl_5', new BasicConv2d(c7, 192, [1, 7], row));
    this.branch_pool = this.registerModule('branch_pool', new BasicConv2d(inChannels, 192, 1));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      const b7 = this.branch7x7_3.forward(this.branch7x7_2.forward(this.branch7x7_1.forward(x)));
      let d = this.branch7x7dbl_1.forward(x);
      for (const m of [this.branch7x7dbl_2, this.branch7x7dbl_3, this.branch7x7dbl_4, this.branch7x7dbl_5]) d = m.forward(d);
      return torch.cat([this.branch1x1.forward(x), b7, d, this.branch_pool.forward(averagePoolNoPad(x))], 1);
    });
  }
}

/** Mixed_7a: torchvision's InceptionD (unchanged by pytorch-fid). */
class InceptionD extends nn.Module {
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2: BasicConv2d;
  readonly branch7x7x3_1: BasicConv2d;
  readonly branch7x7x3_2: BasicConv2d;
  readonly branch7x7x3_3: BasicConv2d;
  readonly branch7x7x3_4: BasicConv2d;
  constructor(inChannels: number) {
    super();
    this.branch3x3_1 = this.registerModule('branch3x3_1', new BasicConv2d(inChannels, 192, 1));
    this.branch3x3_2 = this.registerModule('branch3x3_2', new BasicConv2d(192, 320, 3, { stride: 2 }));
    this.branch7x7x3_1 = this.registerModule('branch7x7x3_1', new BasicConv2d(inChannels, 192, 1));
    this.branch7x7x3_2 = this.registerModule('branch7x7x3_2', new BasicConv2d(192, 192, [1, 7], { padding: [0, 3] }));
    this.branch7x7x3_3 = this.registerModule('branch7x7x3_3', new BasicConv2d(192, 192, [7, 1], { padding: [3, 0] }));
    this.branch7x7x3_4 = this.registerModule('branch7x7x3_4', new BasicConv2d(192, 192, 3, { stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      let b7 = this.branch7x7x3_1.forward(x);
      for (const m of [this.branch7x7x3_2, this.branch7x7x3_3, this.branch7x7x3_4]) b7 = m.forward(b7);
      return torch.cat([this.branch3x3_2.forward(this.branch3x3_1.forward(x)), b7, F.maxPool2d(x, 3, { stride: 2 })], 1);
    });
  }
}

/**
 * Mixed_7b and Mixed_7c: torchvision's InceptionE (expanded filter banks). The pool branch is
 * pytorch-fid's: an average pool without the padding in Mixed_7b (FIDInceptionE_1) and a max
 * pool in Mixed_7c (FIDInceptionE_2), a quirk of the TF graph the weights come from.
 */
class FidInceptionE extends nn.Module {
  readonly branch1x1: BasicConv2d;
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2a: BasicConv2d;
  readonly branch3x3_2b: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3a: BasicConv2d;
  readonly branch3x3dbl_3b: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  constructor(inChannels: number, readonly pool: 'avg' | 'max') {
    super();
    const row = { padding: [0, 1] as [number, number] };
    const col = { padding: [1, 0] as [number, number] };
    this.branch1x1 = this.registerModule('branch1x1', new BasicConv2d(inChannels, 320, 1));
    this.branch3x3_1 = this.registerModule('branch3x3_1', new BasicConv2d(inChannels, 384, 1));
    this.branch3x3_2a = this.registerModule('branch3x3_2a', new BasicConv2d(384, 384, [1, 3], row));
    this.branch3x3_2b = this.registerModule('branch3x3_2b', new BasicConv2d(384, 384, [3, 1], col));
    this.branch3x3dbl_1 = this.registerModule('branch3x3dbl_1', new BasicConv2d(inChannels, 448, 1));
    this.branch3x3dbl_2 = this.registerModule('branch3x3dbl_2', new BasicConv2d(448, 384, 3, { padding: 1 }));
    this.branch3x3dbl_3a = this.registerModule('branch3x3dbl_3a', new BasicConv2d(384, 384, [1, 3], row));
    this.branch3x3dbl_3b = this.registerModule('branch3x3dbl_3b', new BasicConv2d(384, 384, [3, 1], col));
    this.branch_pool = this.registerModule('branch_pool', new BasicConv2d(inChannels, 192, 1));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      const b3 = this.branch3x3_1.forward(x);
      const d = this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x));
      const pooled = this.pool === 'avg' ? averagePoolNoPad(x) : F.maxPool2d(x, 3, { stride: 1, padding: 1 });
      return torch.cat([
        this.branch1x1.forward(x),
        this.branch3x3_2a.forward(b3), this.branch3x3_2b.forward(b3),
        this.branch3x3dbl_3a.forward(d), this.branch3x3dbl_3b.forward(d),
        this.branch_pool.forward(pooled),
      ], 1);
    });
  }
}

/**
 * Called after each stage with its output, named as pytorch-fid's modules: 'resized_normalized_input',
 * 'Conv2d_1a_3x3' ... 'Mixed_7c', and the wrapper's 'blocks.0' ... 'blocks.3' (after each block's
 * pooling). The tensor is freed after the call returns; copy what you need and keep() it.
 */
export type StageTap = (name: string, activation: Tensor) => void;

export interface FidInceptionOptions {
  /** Resize the input to 299x299 (bilinear, align_corners=False) first; default true, as pytorch-fid. */
  resizeInput?: boolean;
  /** Map input in [0, 1] to [-1, 1] (2x - 1); false for input already in [-1, 1]. Default true, as pytorch-fid. */
  normalizeInput?: boolean;
}

/**
 * pytorch-fid's InceptionV3([3]) network: [N, 3, H, W] images in [0, 1] -> [N, 2048] pool3
 * features. Holds every tensor of the standard weights file, fc.* included (unused by pool3,
 * but part of the file, so loading stays strict).
 */
export class FidInceptionV3 extends nn.Module {
  readonly Conv2d_1a_3x3: BasicConv2d;
  readonly Conv2d_2a_3x3: BasicConv2d;
  readonly Conv2d_2b_3x3: BasicConv2d;
  readonly Conv2d_3b_1x1: BasicConv2d;
  readonly Conv2d_4a_3x3: BasicConv2d;
  readonly Mixed_5b: FidInceptionA;
  readonly Mixed_5c: FidInceptionA;
  readonly Mixed_5d: FidInceptionA;
  readonly Mixed_6a: InceptionB;
  readonly Mixed_6b: FidInceptionC;
  readonly Mixed_6c: FidInceptionC;
  readonly Mixed_6d: FidInceptionC;
  readonly Mixed_6e: FidInceptionC;
  readonly Mixed_7a: InceptionD;
  readonly Mixed_7b: FidInceptionE;
  readonly Mixed_7c: FidInceptionE;
  /** The 1008-way classifier of the TF graph; not used for the features. */
  readonly fc: torch.nn.Linear;
  readonly resizeInput: boolean;
  readonly normalizeInput: boolean;

  constructor(o: FidInceptionOptions = {}) {
    super();
    this.resizeInput = o.resizeInput ?? true;
    this.normalizeInput = o.normalizeInput ?? true;
    this.Conv2d_1a_3x3 = this.registerModule('Conv2d_1a_3x3', new BasicConv2d(3, 32, 3, { stride: 2 }));
    this.Conv2d_2a_3x3 = this.registerModule('Conv2d_2a_3x3', new BasicConv2d(32, 32, 3));
    this.Conv2d_2b_3x3 = this.registerModule('Conv2d_2b_3x3', new BasicConv2d(32, 64, 3, { padding: 1 }));
    this.Conv2d_3b_1x1 = this.registerModule('Conv2d_3b_1x1', new BasicConv2d(64, 80, 1));
    this.Conv2d_4a_3x3 = this.registerModule('Conv2d_4a_3x3', new BasicConv2d(80, 192, 3));
    this.Mixed_5b = this.registerModule('Mixed_5b', new FidInceptionA(192, 32));
    this.Mixed_5c = this.registerModule('Mixed_5c', new FidInceptionA(256, 64));
    this.Mixed_5d = this.registerModule('Mixed_5d', new FidInceptionA(288, 64));
    this.Mixed_6a = this.registerModule('Mixed_6a', new InceptionB(288));
    this.Mixed_6b = this.registerModule('Mixed_6b', new FidInceptionC(768, 128));
    this.Mixed_6c = this.registerModule('Mixed_6c', new FidInceptionC(768, 160));
    this.Mixed_6d = this.registerModule('Mixed_6d', new FidInceptionC(768, 160));
    this.Mixed_6e = this.registerModule('Mixed_6e', new FidInceptionC(768, 192));
    this.Mixed_7a = this.registerModule('Mixed_7a', new InceptionD(768));
    this.Mixed_7b = this.registerModule('Mixed_7b', new FidInceptionE(1280, 'avg'));
    this.Mixed_7c = this.registerModule('Mixed_7c', new FidInceptionE(2048, 'max'));
    this.fc = this.registerModule('fc', new nn.Linear(FID_FEATURE_DIM, 1008));
    this.eval();
  }

  /** The four blocks of pytorch-fid's InceptionV3 wrapper; the last ends in the global average pool. */
  private blocks(): { name: string; layers: [string, { forward(x: Tensor): Tensor }][]; pool: (x: Tensor) => Tensor }[] {
    const stride2Max = (x: Tensor) => F.maxPool2d(x, 3, { stride: 2 });
    return [
      { name: 'blocks.0', layers: [['Conv2d_1a_3x3', this.Conv2d_1a_3x3], ['Conv2d_2a_3x3', this.Conv2d_2a_3x3], ['Conv2d_2b_3x3', this.Conv2d_2b_3x3]], pool: stride2Max },
      { name: 'blocks.1', layers: [['Conv2d_3b_1x1', this.Conv2d_3b_1x1], ['Conv2d_4a_3x3', this.Conv2d_4a_3x3]], pool: stride2Max },
      {
        name: 'blocks.2',
        layers: [['Mixed_5b', this.Mixed_5b], ['Mixed_5c', this.Mixed_5c], ['Mixed_5d', this.Mixed_5d], ['Mixed_6a', this.Mixed_6a],
          ['Mixed_6b', this.Mixed_6b], ['Mixed_6c', this.Mixed_6c], ['Mixed_6d', this.Mixed_6d], ['Mixed_6e', this.Mixed_6e]],
        pool: (x) => x.clone(), // pytorch-fid's block 2 has no pooling of its own
      },
      { name: 'blocks.3', layers: [['Mixed_7a', this.Mixed_7a], ['Mixed_7b', this.Mixed_7b], ['Mixed_7c', this.Mixed_7c]], pool: (x) => F.adaptiveAvgPool2d(x, 1) },
    ];
  }

  /**
   * [N, 3, H, W] in [0, 1] (or [-1, 1] with normalizeInput false), in the model's dtype and on its
   * device -> [N, 2048] pool3 features. `tap` sees every stage (for locating a divergence).
   */
  forward(x: Tensor, tap?: StageTap): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== 3) throw new Error(`FidInceptionV3: expected input [N, 3, H, W], got [${x.shape.join(', ')}]`);
    return torch.scope(() => {
      let h = x;
      // Each stage's input is freed as soon as the next exists, so a batch holds ~2 activations at a time.
      const advance = (next: Tensor): void => {
        if (h !== x) h.dispose();
        h = next;
      };
      if (this.resizeInput) advance(F.interpolate(h, { size: FID_INPUT_SIZE, mode: 'bilinear', alignCorners: false }));
      if (this.normalizeInput) advance(h.mul(2).sub(1));
      tap?.('resized_normalized_input', h);
      for (const block of this.blocks()) {
        for (const [name, layer] of block.layers) {
          advance(layer.forward(h));
          tap?.(name, h);
        }
        advance(block.pool(h));
        tap?.(block.name, h);
      }
      return h.flatten(1);
    });
  }
}

export interface FidFeatureOptions {
  /** Images per forward pass; default 50, as pytorch-fid. */
  batchSize?: number;
  /** Range of float input: [0, 1] (default, as pytorch-fid) or [-1, 1] (diffusion samples). uint8 is always 0..255. */
  inputRange?: '0,1' | '-1,1';
}

/**
 * pool3 features of images, in batches: uint8 [N, C, H, W] (0..255) or float in `inputRange`,
 * with C = 3, or C = 1 repeated to RGB (as PIL's convert('RGB') in pytorch-fid's loader).
 * Each batch is moved to the model's device and dtype, resized to 299x299 and normalised by the
 * model. Returns [N, 2048] float32 on the CPU.
 */
export function fidInceptionFeatures(model: FidInceptionV3, images: Tensor, o: FidFeatureOptions = {}): Tensor {
  const batchSize = o.batchSize ?? 50;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`fidInceptionFeatures: batchSize must be a positive integer, got ${batchSize}`);
  if (images.ndim !== 4 || (images.shape[1] !== 3 && images.shape[1] !== 1)) {
    throw new Error(`fidInceptionFeatures: expected images [N, 3, H, W] (or [N, 1, H, W]), got [${images.shape.join(', ')}]`);
  }
  if (images.dtype !== 'uint8' && !torch.isFloating(images.dtype)) {
    throw new Error(`fidInceptionFeatures: expected uint8 or floating images, got ${images.dtype}`);
  }
  if (!model.normalizeInput) throw new Error('fidInceptionFeatures: the model must normalise its input (normalizeInput true); inputRange selects the range');
  const { device, dtype } = model.Conv2d_1a_3x3.conv.weight;
  const n = images.shape[0];
  const parts: Tensor[] = [];
  try {
    for (let start = 0; start < n; start += batchSize) {
      parts.push(torch.noGrad(() => torch.scope(() => {
        let x = images.slice(0, start, Math.min(n, start + batchSize)).to({ device, dtype });
        if (images.dtype === 'uint8') x = x.div(255);
        else if (o.inputRange === '-1,1') x = x.add(1).div(2);
        if (x.shape[1] === 1) x = x.expand([-1, 3, -1, -1]);
        return model.forward(x).to({ device: 'cpu', dtype: 'float32' });
      })));
    }
    return torch.scope(() => torch.cat(parts, 0));
  } finally {
    for (const p of parts) p.dispose();
  }
}
