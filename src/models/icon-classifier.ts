// The offline FID feature network: a small residual CNN for 32x32 RGB images, trained by difftune
// as a classifier (label = icon set) on the `iconnet` source. Its penultimate layer (global
// average pool of the last stage) is the feature vector, as pool3 is for the FID Inception.
//
// Shape: stem 3x3 conv at 32x32, then one stride-2 residual stage per width (16x16, 8x8, 4x4),
// global average pool -> `featureDim` features -> linear logits. Downsampling in the first block
// keeps the cost near 0.1 GFLOP per image, so that 1,000 samples take seconds on 2 CPU cores.
import * as torch from '../torch';
import { aten } from '../torch/aten';
import { Tensor } from '../torch';

const { nn } = torch;

const bilinearAntialiasOp = aten('_upsample_bilinear2d_aa');

/** The input side the network was designed for; other sizes are resized to it (bilinear). */
export const ICON_CLASSIFIER_INPUT = 32;

export interface IconClassifierConfig {
  /** Classes of the training labels (the logits' size). */
  numClasses: number;
  /** Channels of the stem and of each stage; the last is the feature dimension. Default [32, 64, 128, 256]. */
  widths?: number[];
  /** Residual blocks per stage (the first of each downsamples). Default 1. */
  blocksPerStage?: number;
}


/** conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the input (through a strided 1x1 conv + BN when the shape changes), -> ReLU. */
class ResidualBlock extends nn.Module {
  readonly conv1: torch.nn.Conv2d;
  readonly bn1: torch.nn.BatchNorm2d;
  readonly conv2: torch.nn.Conv2d;
  readonly bn2: torch.nn.BatchNorm2d;
  readonly shortcut_conv: torch.nn.Conv2d | null;
  readonly shortcut_bn: torch.nn.BatchNorm2d | null;
  constructor(inChannels: number, outChannels: number, stride: number) {
    super();
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(inChannels, outChannels, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new nn.BatchNorm2d(outChannels));
    this.conv2 = this.registerModule('conv2', new nn.Conv2d(outChannels, outChannels, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new nn.BatchNorm2d(outChannels));
    const project = stride !== 1 || inChannels !== outChannels;
    this.shortcut_conv = project ? this.registerModule('shortcut_conv', new nn.Conv2d(inChannels, outChannels, 1, { stride, bias: false })) : null;
    this.shortcut_bn = project ? this.registerModule('shortcut_bn', new nn.BatchNorm2d(outChannels)) : null;
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      const h = this.bn2.forward(this.conv2.forward(this.bn1.forward(this.conv1.forward(x)).relu()));
      const skip = this.shortcut_conv ? this.shortcut_bn!.forward(this.shortcut_conv.forward(x)) : x;
      return h.add(skip).relu();
    });
  }
}

/**
 * The classifier. `forward` returns logits; `features` the penultimate [N, featureDim] vector. Input
 * is float [N, 3, H, W] in [-1, 1]; H x W other than 32 x 32 is resized first.
 */
export class IconClassifier extends nn.Module {
  readonly config: Required<IconClassifierConfig>;
  readonly stem_conv: torch.nn.Conv2d;
  readonly stem_bn: torch.nn.BatchNorm2d;
  readonly stages: torch.nn.ModuleList<ResidualBlock>;
  readonly head: torch.nn.Linear;

  constructor(config: IconClassifierConfig) {
    super();
    this.config = checkConfig(config);
    const { widths, blocksPerStage, numClasses } = this.config;
    this.stem_conv = this.registerModule('stem_conv', new nn.Conv2d(3, widths[0], 3, { padding: 1, bias: false }));
    this.stem_bn = this.registerModule('stem_bn', new nn.BatchNorm2d(widths[0]));
    const blocks: ResidualBlock[] = [];
    for (let s = 1; s < widths.length; s++) {
      for (let b = 0; b < blocksPerStage; b++) {
        blocks.push(new ResidualBlock(b === 0 ? widths[s - 1] : widths[s], widths[s], b === 0 ? 2 : 1));
      }
    }
    this.stages = this.registerModule('stages', new nn.ModuleList(blocks));
    this.head = this.registerModule('head', new nn.Linear(this.featureDim, numClasses));
  }

  get featureDim(): number {
    return this.config.widths[this.config.widths.length - 1];
  }

  /** float [N, 3, H, W] in [-1, 1] -> [N, featureDim] (the pooled output of the last stage). */
  features(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== 3) throw new Error(`IconClassifier: expected images [N, 3, H, W], got [${x.shape.join(', ')}]`);
    return torch.scope(() => {
      let h = x;
      if (x.shape[2] !== ICON_CLASSIFIER_INPUT || x.shape[3] !== ICON_CLASSIFIER_INPUT) {
        h = resizeToInput(h);
      }
      h = this.stem_bn.forward(this.stem_conv.forward(h)).relu();
      for (const block of this.stages) {
        const next = block.forward(h);
        if (h !== x) h.dispose(); // one activation at a time besides the input
        h = next;
      }
      return h.mean([2, 3]);
    });
  }

  /** float [N, 3, H, W] in [-1, 1] -> logits [N, numClasses]. */
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.head.forward(this.features(x)));
  }

  /** Both at once (one pass): features [N, featureDim] and logits [N, numClasses]. */
  featuresAndLogits(x: Tensor): { features: Tensor; logits: Tensor } {
    return torch.scope(() => {
      const features = this.features(x);
      return { features, logits: this.head.forward(features) };
    });
  }
}

/** Bilinear with antialiasing (F.interpolate(antialias=True)): a plain bilinear downscale would alias fine detail. */
function resizeToInput(x: Tensor): Tensor {
  return new Tensor(bilinearAntialiasOp(x.h, [ICON_CLASSIFIER_INPUT, ICON_CLASSIFIER_INPUT], false, null, null));
}

function checkConfig(c: IconClassifierConfig): Required<IconClassifierConfig> {
  const widths = c.widths ?? [32, 64, 128, 256];
  const blocksPerStage = c.blocksPerStage ?? 1;
  if (!Number.isInteger(c.numClasses) || c.numClasses < 2) throw new RangeError(`IconClassifier: numClasses must be an integer >= 2, got ${c.numClasses}`);
  if (!Array.isArray(widths) || widths.length < 2 || widths.some((w) => !Number.isInteger(w) || w < 1)) {
    throw new RangeError(`IconClassifier: widths must be >= 2 positive integers (stem, then one per stage), got [${widths}]`);
  }
  if (!Number.isInteger(blocksPerStage) || blocksPerStage < 1) throw new RangeError(`IconClassifier: blocksPerStage must be a positive integer, got ${blocksPerStage}`);
  return { numClasses: c.numClasses, widths: [...widths], blocksPerStage };
}
