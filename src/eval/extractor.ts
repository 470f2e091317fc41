// The feature networks FID/KID are computed with, behind one interface: difftune's own classifiers
// with weights shipped in assets/extractor (`iconnet`, the default, for colour icons; `fashion`, the
// same network trained on Fashion-MNIST, for the grey testbed) and the standard FID Inception-v3
// (`inception:FILE`, the user's pytorch-fid weights; never downloaded). Metrics carry the
// extractor's name (fid_iconnet, fid_fashion, fid_inception) so they are never confused.
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { sha256File } from '../data/hash';
import { IconClassifier, IconClassifierConfig } from '../models/icon-classifier';
import { fidInceptionFeatures, FID_FEATURE_DIM } from '../models/inception';
import { loadFidInception } from '../models/inception-io';

export type ExtractorName = 'iconnet' | 'fashion' | 'inception';

export interface FeatureExtractor {
  /** What the metrics are named after: fid_<name>, kid_<name>. */
  readonly name: ExtractorName;
  /** Feature dimension. */
  readonly dim: number;
  /** The weights file and its SHA-256 (part of every cache key: other weights, other statistics). */
  readonly weightsFile: string;
  readonly weightsHash: string;
  /** uint8 [N, 3, H, W] (or [N, 1, H, W], repeated to RGB) -> float32 [N, dim] on the CPU. */
  features(images: Tensor): Tensor;
  /** Frees the network's tensors. */
  dispose(): void;
}

/** The shipped iconnet weights (relative to the package root, which is three levels above dist/src/eval). */
export const DEFAULT_ICONNET_WEIGHTS = path.resolve(__dirname, '..', '..', '..', 'assets', 'extractor', 'iconnet-classifier.safetensors');

/** The shipped Fashion-MNIST classifier (the testbed source's domain). */
export const DEFAULT_FASHION_WEIGHTS = path.resolve(__dirname, '..', '..', '..', 'assets', 'extractor', 'fashion-classifier.safetensors');

/** The `format` metadata of an iconnet weights file. */
export const ICONNET_FORMAT = 'difftune-icon-classifier';

export interface LoadExtractorOptions {
  device?: Device;
  /** Images per forward pass (default 250 for iconnet, 50 for inception). */
  batchSize?: number;
}

/**
 * 'iconnet' or 'fashion' (the shipped weights), 'iconnet:FILE' (other weights of the same network, e.g. a
 * retrained one) or 'inception:FILE' (pt_inception-2015-12-05-6726825d.pth or a re-save of it).
 */
export function loadExtractor(spec = 'iconnet', o: LoadExtractorOptions = {}): FeatureExtractor {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const file = colon < 0 ? '' : spec.slice(colon + 1);
  if (kind === 'iconnet') return iconnetExtractor('iconnet', file || DEFAULT_ICONNET_WEIGHTS, o);
  if (kind === 'fashion') return iconnetExtractor('fashion', file || DEFAULT_FASHION_WEIGHTS, o);
  if (kind === 'inception') {
    if (!file) throw new Error("extractor 'inception' needs its weights file: inception:FILE (pytorch-fid's pt_inception-2015-12-05-6726825d.pth; nothing is downloaded)");
    return inceptionExtractor(file, o);
  }
  throw new Error(`unknown extractor '${spec}': expected 'iconnet', 'fashion' (or either with :FILE) or 'inception:FILE'`);
}

/** Reads an iconnet weights file (config and classes from its metadata) into an eval-mode IconClassifier. */
export function loadIconClassifier(file: string, o: { device?: Device } = {}): { model: IconClassifier; classes: string[]; metadata: Record<string, string> } {
  if (!fs.existsSync(file)) {
    throw new Error(`${file}: iconnet extractor weights not found (train them with 'difftune extractor train --data data/iconnet --out ${file}')`);
  }
  const metadata = torch.safetensorsMetadata(file);
  if (metadata.format !== ICONNET_FORMAT) {
    throw new Error(`${file}: not an iconnet extractor file (metadata format is '${metadata.format ?? 'missing'}', expected '${ICONNET_FORMAT}')`);
  }
  let config: IconClassifierConfig;
  let classes: string[];
  try {
    config = JSON.parse(metadata.config) as IconClassifierConfig;
    classes = JSON.parse(metadata.classes ?? '[]') as string[];
  } catch (e) {
    throw new Error(`${file}: metadata 'config' or 'classes' is not valid JSON (${(e as Error).message})`);
  }
  const model = new IconClassifier(config);
  const sd = torch.loadSafetensors(file);
  try {
    model.loadStateDict(sd, { what: file });
  } catch (e) {
    for (const p of [...model.parameters(), ...model.namedBuffers().map(([, b]) => b)]) p.dispose();
    throw e;
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  if (o.device) model.to({ device: o.device });
  return { model: model.eval(), classes, metadata };
}

function iconnetExtractor(name: 'iconnet' | 'fashion', file: string, o: LoadExtractorOptions): FeatureExtractor {
  const { model } = loadIconClassifier(file, o);
  const batchSize = checkBatchSize(o.batchSize ?? 250);
  const device = model.stem_conv.weight.device;
  return {
    name,
    dim: model.featureDim,
    weightsFile: path.resolve(file),
    weightsHash: sha256File(file),
    features: (images) => inBatches(images, batchSize, name, (batch) =>
      model.features(batch.to({ device, dtype: 'float32' }).div(127.5).sub(1))),
    dispose: () => model.dispose(),
  };
}

function inceptionExtractor(file: string, o: LoadExtractorOptions): FeatureExtractor {
  const model = loadFidInception(file, { device: o.device });
  const batchSize = checkBatchSize(o.batchSize ?? 50);
  return {
    name: 'inception',
    dim: FID_FEATURE_DIM,
    weightsFile: path.resolve(file),
    weightsHash: sha256File(file),
    features: (images) => {
      checkImages(images, 'inception');
      return fidInceptionFeatures(model, images, { batchSize });
    },
    dispose: () => model.dispose(),
  };
}

function checkBatchSize(b: number): number {
  if (!Number.isInteger(b) || b < 1) throw new RangeError(`extractor batchSize must be a positive integer, got ${b}`);
  return b;
}

function checkImages(images: Tensor, who: string): void {
  if (!(images instanceof Tensor) || images.dtype !== 'uint8' || images.ndim !== 4 || (images.shape[1] !== 3 && images.shape[1] !== 1)) {
    const got = images instanceof Tensor ? `${images.dtype} [${images.shape.join(', ')}]` : typeof images;
    throw new TypeError(`${who} extractor: expected uint8 images [N, 3, H, W] (or [N, 1, H, W]), got ${got}`);
  }
  if (images.shape[0] === 0) throw new RangeError(`${who} extractor: no images (N = 0)`);
}

/** Runs `fn` on uint8 batches without gradients; grey images are repeated to RGB. Returns float32 [N, dim] on the CPU. */
function inBatches(images: Tensor, batchSize: number, who: string, fn: (batch: Tensor) => Tensor): Tensor {
  checkImages(images, who);
  const n = images.shape[0];
  const parts: Tensor[] = [];
  try {
    for (let start = 0; start < n; start += batchSize) {
      parts.push(torch.noGrad(() => torch.scope(() => {
        let x = images.narrow(0, start, Math.min(batchSize, n - start));
        if (x.shape[1] === 1) x = x.expand([-1, 3, -1, -1]);
        return fn(x).to({ device: 'cpu', dtype: 'float32' });
      })));
    }
    return parts.length === 1 ? parts.pop()! : torch.cat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}
