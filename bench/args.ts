// Reading a benchmark runner's flags: `--name value` pairs, with errors through the runner's usage().

export class Args {
  private i = -1;
  constructor(private readonly argv: string[], private readonly usage: (msg: string) => never) {}

  /** The next flag, or undefined when none are left. */
  flag(): string | undefined {
    return this.argv[++this.i];
  }

  /** The value that follows the current flag. */
  value(): string {
    const flag = this.argv[this.i];
    const next = this.argv[++this.i];
    if (next === undefined) this.usage(`${flag} needs a value`);
    return next;
  }

  int(s: string, what: string): number {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) this.usage(`${what} must be a positive integer, got '${s}'`);
    return n;
  }

  /** The current flag's value, which must be one of the allowed words. */
  choice<T extends string>(allowed: readonly T[]): T {
    const flag = this.argv[this.i];
    const v = this.value();
    if (!allowed.includes(v as T)) this.usage(`${flag} must be ${allowed.join(', ')}; got '${v}'`);
    return v as T;
  }
}

/** A shell-safe rendering of one argument (for the exact command a report quotes). */
export function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/**
 * A runner's settings from its argv, or null after printing its usage for --help; a bad flag
 * prints the message and the usage and exits with status 2.
 */
export function settingsOrExit<S>(name: string, usage: string, argv: string[], parse: (argv: string[]) => S): S | null {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    return null;
  }
  try {
    return parse(argv);
  } catch (e) {
    console.error(`${name}: ${(e as Error).message}\n${usage}`);
    process.exit(2);
  }
}
