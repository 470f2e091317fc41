// A one-line progress bar with rate and ETA for long training and sampling loops. On a terminal it redraws in
// place; in a log file (non-TTY) it prints a whole line now and then so logs stay short and readable.

/** What the bar writes to: process.stderr, process.stdout or anything with write(). */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressBarOptions {
  total: number;
  label: string;
  stream?: ProgressStream;
  /** Items already done when the bar starts (a resumed run); the rate and ETA count only what is done after. */
  initial?: number;
  /** Least time between two lines; default 100 ms on a terminal, 10 s otherwise. */
  intervalMs?: number;
  /** Clock in milliseconds, for tests; default Date.now. */
  now?: () => number;
}

type Info = Record<string, string | number>;

const TTY_INTERVAL_MS = 100;
const LOG_INTERVAL_MS = 10_000;
const LOG_BAR_WIDTH = 20;
const MAX_BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 10;

/** "45s", "3m12s", "1h02m"; "?" for a negative or non-finite duration. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const total = Math.round(seconds);
  if (total < 60) return `${total}s`;
  if (total < 3600) return `${Math.floor(total / 60)}m${String(total % 60).padStart(2, '0')}s`;
  return `${Math.floor(total / 3600)}h${String(Math.floor((total % 3600) / 60)).padStart(2, '0')}m`;
}

function formatValue(v: string | number): string {
  if (typeof v === 'string') return v;
  return Number.isInteger(v) ? String(v) : v.toPrecision(4);
}

function formatInfo(info: Info | undefined): string {
  if (!info) return '';
  return Object.entries(info).map(([k, v]) => `  ${k} ${formatValue(v)}`).join('');
}

/** Items per second above 1, seconds per item below, so slow steps still read sensibly. */
function formatRate(perSecond: number | undefined): string {
  if (perSecond === undefined) return '- it/s';
  return perSecond >= 1 ? `${perSecond.toFixed(1)} it/s` : `${(1 / perSecond).toFixed(1)} s/it`;
}

export class ProgressBar {
  private readonly total: number;
  private readonly label: string;
  private readonly stream: ProgressStream;
  private readonly initial: number;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly startMs: number;
  private lastPrintMs: number;
  private lastDone: number;
  private lastInfo: Info | undefined;
  private lastLineLength = 0;
  private finished = false;

  constructor(o: ProgressBarOptions) {
    if (!Number.isFinite(o.total) || o.total < 0) throw new RangeError(`ProgressBar(${o.label}): total must be a finite number >= 0, got ${o.total}`);
    this.total = o.total;
    this.label = o.label;
    this.stream = o.stream ?? process.stderr;
    this.initial = o.initial ?? 0;
    this.tty = this.stream.isTTY === true;
    this.intervalMs = o.intervalMs ?? (this.tty ? TTY_INTERVAL_MS : LOG_INTERVAL_MS);
    this.now = o.now ?? Date.now;
    this.startMs = this.now();
    // A terminal shows the bar at the first update; a log gets its first line after one interval.
    this.lastPrintMs = this.tty ? -Infinity : this.startMs;
    this.lastDone = this.initial;
  }

  update(done: number, info?: Info): void {
    if (this.finished) return;
    if (!Number.isFinite(done)) throw new RangeError(`ProgressBar(${this.label}).update: done must be a finite number, got ${done}`);
    this.lastDone = done;
    if (info) this.lastInfo = info;
    const t = this.now();
    if (t - this.lastPrintMs < this.intervalMs) return;
    this.lastPrintMs = t;
    this.print(this.line(t, false), false);
  }

  /** Prints the final line (elapsed time instead of ETA) and ends it; later calls do nothing. */
  done(info?: Info): void {
    if (this.finished) return;
    this.finished = true;
    if (info) this.lastInfo = info;
    this.print(this.line(this.now(), true), true);
  }

  private line(t: number, final: boolean): string {
    const elapsed = (t - this.startMs) / 1000;
    const doneSinceStart = this.lastDone - this.initial;
    const rate = elapsed > 0 && doneSinceStart > 0 ? doneSinceStart / elapsed : undefined;
    const fraction = this.total > 0 ? Math.min(1, Math.max(0, this.lastDone / this.total)) : 1;
    const timing = final
      ? `elapsed ${formatDuration(elapsed)}`
      : `ETA ${rate === undefined ? '?' : formatDuration(Math.max(0, this.total - this.lastDone) / rate)}`;
    const counts = `${this.lastDone}/${this.total} ${(fraction * 100).toFixed(1)}%  ${formatRate(rate)}  ${timing}`;
    const tail = counts + formatInfo(this.lastInfo);
    let barWidth = LOG_BAR_WIDTH;
    if (this.tty && this.stream.columns) {
      barWidth = Math.min(MAX_BAR_WIDTH, Math.max(MIN_BAR_WIDTH, this.stream.columns - 1 - this.label.length - tail.length - 4));
    }
    const filled = Math.floor(fraction * barWidth);
    return `${this.label} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${tail}`;
  }

  private print(line: string, final: boolean): void {
    if (!this.tty) {
      this.stream.write(line + '\n');
      return;
    }
    // A line wider than the terminal would wrap, and \r would then redraw only its last row.
    if (this.stream.columns && line.length > this.stream.columns - 1) line = line.slice(0, Math.max(0, this.stream.columns - 1));
    const padded = line.padEnd(this.lastLineLength);
    this.lastLineLength = line.length;
    this.stream.write('\r' + padded + (final ? '\n' : ''));
  }
}
