// What a run reports: running means of the target and replay losses, the loss per t-bucket
// (where along the chain the model is learning), learning rate, gradient norm, throughput and
// memory, every log interval to log.jsonl and TensorBoard event files, plus a progress bar.
import * as path from 'path';
import { JsonlLogger, truncateJsonlAfter } from '../report/jsonl';
import { ProgressBar } from '../report/progress';
import { TensorBoardWriter } from '../report/tensorboard';
import * as torch from '../torch';
import type { ImageSink } from './previews';

const BUCKETS = 10;

interface Interval {
  steps: number;
  loss: number;
  target: number;
  replay: number;
  replaySteps: number;
  gradNorm: number;
  skipped: number;
  images: number;
  bucketSum: Float64Array;
  bucketCount: Float64Array;
  startMs: number;
}

function emptyInterval(): Interval {
  return {
    steps: 0, loss: 0, target: 0, replay: 0, replaySteps: 0, gradNorm: 0, skipped: 0, images: 0,
    bucketSum: new Float64Array(BUCKETS), bucketCount: new Float64Array(BUCKETS), startMs: Date.now(),
  };
}

export class TrainLog implements ImageSink {
  private readonly jsonl: JsonlLogger | null;
  private readonly tb: TensorBoardWriter | null;
  private bar: ProgressBar | null = null;
  private cur = emptyInterval();
  private lr = 0;
  private nan = { skipped: 0, rollbacks: 0 };
  private imagesSeen = 0;

  constructor(out: string, private readonly o: { enabled: boolean; total: number; numTimesteps: number; progress?: boolean; progressSeconds?: number }) {
    this.jsonl = o.enabled ? new JsonlLogger(path.join(out, 'log.jsonl')) : null;
    this.tb = o.enabled ? new TensorBoardWriter(path.join(out, 'tensorboard')) : null;
  }

  start(step: number): void {
    this.cur = emptyInterval();
    this.lastStep = step;
    // Without a terminal too (CI, nohup, a log file): the bar then prints a whole line now and then.
    const show = this.o.progress ?? true;
    const tty = Boolean(process.stderr.isTTY);
    const intervalMs = !tty && this.o.progressSeconds !== undefined ? this.o.progressSeconds * 1000 : undefined;
    if (this.o.enabled && show) this.bar = new ProgressBar({ total: this.o.total, label: 'train', initial: step, stream: process.stderr, intervalMs });
  }

  /** Per-sample losses at their timesteps (for the per-bucket means). */
  observeTimesteps(t: number[], losses: number[]): void {
    const width = this.o.numTimesteps / BUCKETS;
    t.forEach((ti, i) => {
      if (!Number.isFinite(losses[i])) return;
      const b = Math.min(BUCKETS - 1, Math.floor(ti / width));
      this.cur.bucketSum[b] += losses[i];
      this.cur.bucketCount[b] += 1;
    });
  }

  observeStep(r: { applied: boolean; loss: number; target: number; replay: number | null; gradNorm: number },
    batch: number, accumulate: number, lr: number, nan: { skipped: number; rollbacks: number }): void {
    this.lr = lr;
    this.nan = { skipped: nan.skipped, rollbacks: nan.rollbacks };
    this.imagesSeen += batch * accumulate;
    if (!r.applied) {
      this.cur.skipped += 1;
      return;
    }
    const c = this.cur;
    c.steps += 1;
    c.loss += r.loss;
    c.target += r.target;
    c.gradNorm += r.gradNorm;
    c.images += batch * accumulate;
    if (r.replay !== null) {
      c.replay += r.replay;
      c.replaySteps += 1;
    }
    this.bar?.update(this.stepOf(), { loss: r.loss.toFixed(4), ...(r.replay !== null ? { replay: r.replay.toFixed(4) } : {}) });
  }

  private lastStep = 0;
  private stepOf(): number {
    return this.lastStep + this.cur.steps;
  }

  /** Writes one record for the interval since the last flush. */
  flush(step: number, device: string): Record<string, unknown> | null {
    const c = this.cur;
    if (c.steps === 0) return null;
    const seconds = Math.max(1e-9, (Date.now() - c.startMs) / 1000);
    const record: Record<string, unknown> = {
      step,
      time: new Date().toISOString(),
      loss: c.loss / c.steps,
      loss_target: c.target / c.steps,
      ...(c.replaySteps ? { loss_replay: c.replay / c.replaySteps } : {}),
      lr: this.lr,
      grad_norm: c.gradNorm / c.steps,
      images_per_s: c.images / seconds,
      steps_per_s: c.steps / seconds,
      skipped_steps: this.nan.skipped,
      rollbacks: this.nan.rollbacks,
      rss_mb: process.memoryUsage().rss / 2 ** 20,
    };
    if (device.startsWith('cuda')) {
      const m = torch.cuda.memoryStats();
      if (m) record.cuda_allocated_mb = (m as { allocated: number }).allocated / 2 ** 20;
    }
    const width = this.o.numTimesteps / BUCKETS;
    const buckets: Record<string, number> = {};
    for (let b = 0; b < BUCKETS; b++) {
      if (c.bucketCount[b] > 0) buckets[`${Math.round(b * width)}-${Math.round((b + 1) * width) - 1}`] = c.bucketSum[b] / c.bucketCount[b];
    }
    record.loss_by_t = buckets;
    this.jsonl?.write(record);
    if (this.tb) {
      const scalars: Record<string, number> = {};
      for (const [k, v] of Object.entries(record)) if (typeof v === 'number') scalars[`train/${k}`] = v;
      for (const [k, v] of Object.entries(buckets)) scalars[`loss_by_t/${k.padStart(9, '0')}`] = v;
      this.tb.addScalars(scalars, step);
    }
    this.lastStep = step;
    this.cur = emptyInterval();
    return record;
  }

  /** An extra record (e.g. in-loop FID) at a step, to log.jsonl and TensorBoard. */
  metric(step: number, values: Record<string, number>): void {
    this.jsonl?.write({ step, time: new Date().toISOString(), ...values });
    this.tb?.addScalars(Object.fromEntries(Object.entries(values).map(([k, v]) => [`eval/${k}`, v])), step);
    this.tb?.flush();
  }

  image(tag: string, png: Buffer, width: number, height: number, step: number): void {
    this.tb?.addImage(tag, png, width, height, step);
    this.tb?.flush();
  }

  /** Counters a checkpoint carries so a resumed run continues them. */
  progress(): Record<string, unknown> {
    return { imagesSeen: this.imagesSeen };
  }

  /** Drops log.jsonl's records after `step` (a resume from there logs those steps again). */
  rewind(step: number): void {
    if (this.jsonl) truncateJsonlAfter(this.jsonl.file, step);
  }

  restore(p: Record<string, unknown>): void {
    if (typeof p.imagesSeen === 'number') this.imagesSeen = p.imagesSeen;
  }

  finish(step: number): void {
    this.bar?.done({ step });
    this.bar = null;
    this.tb?.flush();
  }

  close(): void {
    this.jsonl?.close();
    this.tb?.close();
  }
}
