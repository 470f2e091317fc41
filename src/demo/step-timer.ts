// Numbered steps with their wall time, printed as they start and end, and kept for the report.

export interface StepTiming { title: string; seconds: number }

export class StepTimer {
  readonly timings: StepTiming[] = [];
  private index = 0;
  private readonly started = Date.now();

  constructor(private readonly total: number, private readonly log: (m: string) => void) {}

  /** Runs one step: prints "[k/n] title", runs fn, prints its time. */
  async run<T>(title: string, fn: () => Promise<T> | T): Promise<T> {
    this.index += 1;
    this.log(`\n[${this.index}/${this.total}] ${title}`);
    const t0 = Date.now();
    const value = await fn();
    const seconds = (Date.now() - t0) / 1000;
    this.timings.push({ title, seconds });
    this.log(`    done in ${formatSeconds(seconds)} (${formatSeconds((Date.now() - this.started) / 1000)} in all)`);
    return value;
  }

  get elapsedSeconds(): number {
    return (Date.now() - this.started) / 1000;
  }
}

/** "12.3 s", "4 min 05 s". */
export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, '0')} s`;
}
