// The source-model quality gate: accuracy bookkeeping, the class-name mapping between model and
// classifier, and `difftune gate` end to end on a tiny DiT and classifier (its real accuracy must
// equal the classifier's own on the held-out split, and the verdict must follow the share).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ImageDataset } from '../src/data/image-dataset';
import { splitIndices } from '../src/data/split';
import { accuracyOf, classIndexMap, classify, gateResult } from '../src/eval/class-gate';
import { ICONNET_FORMAT } from '../src/eval/extractor';
import { DiT } from '../src/models/dit';
import { saveDiT } from '../src/models/dit-io';
import { IconClassifier } from '../src/models/icon-classifier';
import * as torch from '../src/torch';
import { difftune } from './helpers/difftune-cli';
import { SIZE, tempDir, writeTargetFolder } from './helpers/train-fixture';

test('accuracyOf counts hits overall and per class; gateResult passes at the share and not below', () => {
  const a = accuracyOf([0, 1, 1, 2], [0, 1, 2, 2], 4);
  assert.equal(a.accuracy, 0.75);
  assert.deepEqual(a.perClass.slice(0, 3), [1, 1, 0.5]);
  assert.ok(Number.isNaN(a.perClass[3]), 'a class never asked for has no accuracy');
  assert.throws(() => accuracyOf([0], [0, 1], 2), /1 predictions for 2 labels/);
  const real = { predicted: [0, 1, 0, 1], labels: [0, 1, 0, 1] }; // 100%
  assert.equal(gateResult({ predicted: [0, 1, 0, 0], labels: [0, 1, 0, 1] }, real, 2).passed, true, '75% of 100% passes');
  const fail = gateResult({ predicted: [0, 1, 1, 0], labels: [0, 1, 0, 1] }, real, 2);
  assert.equal(fail.share, 0.5);
  assert.equal(fail.passed, false);
});

test('classIndexMap maps model classes to the classifier by name and names a missing class', () => {
  assert.deepEqual(classIndexMap(['b', 'a'], ['a', 'b', 'c'], 'data'), [1, 0]);
  assert.throws(() => classIndexMap(['a', 'z'], ['a', 'b'], 'data/x'), /data\/x: class 'z' is not one of the classifier's 2 classes/);
});

test('difftune gate end to end: samples, the held-out real accuracy, the verdict, the JSON and the grid', async () => {
  const dir = tempDir('gate');
  const data = path.join(dir, 'data');
  writeTargetFolder(data, 20); // classes cross, square (sorted)
  torch.manualSeed(5);
  const model = new DiT({ inputSize: SIZE, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 2, numHeads: 2, numClasses: 2, classDropoutProb: 0.1 });
  saveDiT(path.join(dir, 'dit.safetensors'), model);
  model.dispose();
  // A classifier whose class order differs from the folder's, with an extra class.
  const classes = ['square', 'other', 'cross'];
  const classifier = new IconClassifier({ numClasses: 3, widths: [8, 16, 32] }).eval();
  const classifierFile = path.join(dir, 'classifier.safetensors');
  torch.saveSafetensors(classifierFile, classifier.stateDict(), { format: ICONNET_FORMAT, config: JSON.stringify(classifier.config), classes: JSON.stringify(classes) });

  const out = path.join(dir, 'gate.json');
  const grid = path.join(dir, 'gate.png');
  const r = difftune(['gate', '--ckpt', path.join(dir, 'dit.safetensors'), '--data', data, '--classifier', classifierFile,
    '--sampler', 'ddim', '--steps', '3', '--per-class', '3', '--batch', '4', '--out', out, '--grid', grid]);
  assert.match(r.stdout, /sample accuracy [\d.]+% \(6 samples, ddim 3 steps, cfg 1\.5\)/);
  const g = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(g.samples, 6);
  // Real accuracy, independently: the same split, the same classifier, labels mapped by name.
  const ds = await ImageDataset.fromFolder(data, { resolution: SIZE });
  const held = splitIndices(ds.length, { evalFraction: 0.1, seed: 0 }).eval;
  const sub = ds.subset(held);
  const labels = (sub.labels.toArray() as number[]).map((y) => classes.indexOf(ds.classes[y]));
  assert.equal(g.realImages, held.length);
  assert.equal(g.realAccuracy, accuracyOf(classify(classifier, sub.images), labels, 3).accuracy);
  assert.equal(g.passed, g.share >= 0.75);
  assert.match(r.stdout, g.passed ? /PASSED/ : /FAILED/);
  assert.deepEqual(Object.keys(g.perClassAccuracy), ['cross', 'square']);
  assert.ok(fs.statSync(grid).size > 0);
  sub.dispose();
  ds.dispose();
  classifier.dispose();

  const bad = difftune(['gate', '--ckpt', path.join(dir, 'dit.safetensors'), '--data', data], { ok: false });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /class 'cross' is not one of the classifier's 26 classes/);
});
