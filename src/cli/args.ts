// A small, strict flag parser: --name value / --name=value / --flag; unknown flags are errors.

/** `value`: what the value is, as help and messages name it (default the type); for string flags
 * that a config schema parses later (the trainer's shortcuts are numbers, enums, ...). */
export type FlagSpec = Record<string, { type: 'number' | 'string' | 'boolean'; default?: number | string | boolean; help: string; value?: string }>;

export type Flags<S extends FlagSpec> = {
  [K in keyof S]: S[K]['type'] extends 'number' ? number : S[K]['type'] extends 'boolean' ? boolean : string;
};

export function helpText(command: string, summary: string, spec: FlagSpec): string {
  const rows = Object.entries(spec).map(([k, s]) => {
    const def = s.default === undefined ? (s.type === 'boolean' ? '' : ' (required)')
      : s.default === '' ? (/default/.test(s.help) ? '' : ' (default none)') : ` (default ${JSON.stringify(s.default)})`;
    return `  --${k}${s.type === 'boolean' ? '' : ` <${s.value ?? s.type}>`}\n      ${s.help}${def}`;
  });
  return `usage: difftune ${command} [options]\n\n${summary}\n\noptions:\n${rows.join('\n')}`;
}

/** Parses argv against spec; returns null after printing help for --help. */
export function parseFlags<S extends FlagSpec>(command: string, summary: string, spec: S, argv: string[]): Flags<S> | null {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) if (s.default !== undefined) out[k] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(helpText(command, summary, spec));
      return null;
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m || !(m[1] in spec)) throw new Error(`${command}: unknown option '${arg}' (see 'difftune ${command} --help')`);
    const s = spec[m[1]];
    if (s.type === 'boolean') {
      out[m[1]] = m[2] === undefined ? true : m[2] !== 'false';
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`${command}: option --${m[1]} needs a value (<${s.value ?? s.type}>)`);
    if (s.type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new Error(`${command}: option --${m[1]} expects a number, got '${value}'`);
      out[m[1]] = n;
    } else {
      out[m[1]] = value;
    }
  }
  for (const [k, s] of Object.entries(spec)) {
    if (out[k] === undefined && s.default === undefined && s.type !== 'boolean') {
      throw new Error(`${command}: option --${k} is required (${s.help})`);
    }
  }
  return out as Flags<S>;
}

/** --skip-unknown, the same in every command that loads checkpoints. */
export const SKIP_UNKNOWN_FLAG = { type: 'boolean', default: false, help: "load a .pt checkpoint's unsupported pickle globals (e.g. argparse.Namespace) as inert placeholders, with a warning, instead of refusing the file" } as const;

/** A flag's value checked against its allowed words (the error names the flag and them). */
export function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`--${flag} must be ${allowed.join(' or ')}, got '${value}'`);
  return value as T;
}
