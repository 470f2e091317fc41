// A small schema validator for configuration files: every field has a type, a default and a
// one-line description, unknown fields are errors, and every message names the field's path.
// (Hand-written rather than a JSON-Schema library: the schema is also the documentation that
// `difftune finetune --help-config` prints.)

export type FieldSpec =
  | { type: 'number'; default: number | null; min?: number; max?: number; exclusiveMin?: boolean; integer?: boolean; nullable?: boolean; help: string }
  | { type: 'string'; default: string | null; nullable?: boolean; help: string }
  | { type: 'boolean'; default: boolean; help: string }
  | { type: 'enum'; values: readonly string[]; default: string; help: string }
  | { type: 'numbers'; length?: number; default: number[]; help: string };

export interface SectionSpec {
  [field: string]: FieldSpec | SectionSpec;
}

function isField(s: FieldSpec | SectionSpec): s is FieldSpec {
  return typeof (s as FieldSpec).type === 'string' && typeof (s as FieldSpec).help === 'string';
}

export class ConfigError extends Error {
  constructor(where: string, readonly field: string, message: string) {
    super(`${where}: ${field ? `'${field}' ` : ''}${message}`);
    this.name = 'ConfigError';
  }
}

/** Nearest known name by edit distance, for "did you mean" hints on typos. */
export function suggest(name: string, known: string[]): string {
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
    }
    return d[a.length][b.length];
  };
  const best = known.map((k) => [k, dist(name, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 3 ? ` (did you mean '${best[0]}'?)` : '';
}

function checkField(spec: FieldSpec, value: unknown, path: string, where: string): unknown {
  const fail = (expected: string): never => {
    const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
    throw new ConfigError(where, path, `must be ${expected}, got ${shown}`);
  };
  if (value === null) {
    if ((spec.type === 'number' || spec.type === 'string') && spec.nullable) return null;
    fail(`a ${spec.type === 'enum' ? `one of ${spec.values.join(' | ')}` : spec.type} (not null)`);
  }
  switch (spec.type) {
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(`a finite ${spec.integer ? 'integer' : 'number'}`);
      const v = value as number;
      if (spec.integer && !Number.isInteger(v)) fail('an integer');
      if (spec.min !== undefined && (spec.exclusiveMin ? v <= spec.min : v < spec.min)) fail(`${spec.exclusiveMin ? '>' : '>='} ${spec.min}`);
      if (spec.max !== undefined && v > spec.max) fail(`<= ${spec.max}`);
      return v;
    }
    case 'string':
      if (typeof value !== 'string') fail('a string');
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') fail('true or false');
      return value;
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) fail(`one of ${spec.values.map((v) => `"${v}"`).join(', ')}`);
      return value;
    case 'numbers':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) fail('an array of finite numbers');
      if (spec.length !== undefined && (value as unknown[]).length !== spec.length) fail(`an array of ${spec.length} numbers`);
      return [...(value as number[])];
  }
}

/**
 * Validates `value` against `spec` and fills in defaults. `where` names the source (a file or
 * "command line") for error messages; `prefix` is the path of the section being checked.
 */
export function validateSection(spec: SectionSpec, value: unknown, where: string, prefix = ''): Record<string, unknown> {
  if (value === undefined) value = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(where, prefix, `must be an object, got ${JSON.stringify(value)}`);
  }
  const obj = value as Record<string, unknown>;
  const known = Object.keys(spec);
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      const path = prefix ? `${prefix}.${k}` : k;
      throw new ConfigError(where, path, `is not a known field${suggest(k, known)}; known here: ${known.join(', ')}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (isField(s)) out[k] = obj[k] === undefined ? (Array.isArray(s.default) ? [...s.default] : s.default) : checkField(s, obj[k], path, where);
    else out[k] = validateSection(s, obj[k], where, path);
  }
  return out;
}

/** Parses a command-line value for the field at `path` ("a.b.c") of spec. */
export function parseOverride(spec: SectionSpec, path: string, text: string): unknown {
  let node: FieldSpec | SectionSpec | undefined = spec;
  for (const part of path.split('.')) {
    if (!node || isField(node)) break;
    const next: FieldSpec | SectionSpec | undefined = (node as SectionSpec)[part];
    if (!next) throw new ConfigError('command line', path, `is not a known field${suggest(part, Object.keys(node))}`);
    node = next;
  }
  if (!node || !isField(node)) throw new ConfigError('command line', path, 'names a section, not a field');
  if (text === 'null') return null;
  switch (node.type) {
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw new ConfigError('command line', path, `must be a number, got '${text}'`);
      return n;
    }
    case 'boolean': return text === 'true' ? true : text === 'false' ? false : text;
    case 'numbers': return text.split(',').map(Number);
    default: return text;
  }
}

/** Sets obj[a][b][c] = value for path "a.b.c", creating sections as needed. */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof node[p] !== 'object' || node[p] === null) node[p] = {};
    node = node[p] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]] = value;
}

/** A field's value type as help shows it: integer, number, a|b|c, ... */
export function fieldType(s: FieldSpec): string {
  if (s.type === 'enum') return s.values.join('|');
  if (s.type === 'number' && s.integer) return 'integer';
  if (s.type === 'numbers') return 'number,number';
  return s.type;
}

/** The field at `path` ("a.b.c") of spec. */
export function fieldAt(spec: SectionSpec, path: string): FieldSpec {
  let node: FieldSpec | SectionSpec = spec;
  for (const part of path.split('.')) {
    node = (node as SectionSpec)[part];
    if (!node) throw new Error(`no config field ${path}`);
  }
  if (!isField(node)) throw new Error(`${path} is a section, not a field`);
  return node;
}

/** The schema as indented "path  type (default)  help" lines. */
export function describeSchema(spec: SectionSpec, prefix = ''): string[] {
  const lines: string[] = [];
  for (const [k, s] of Object.entries(spec)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (isField(s)) {
      lines.push(`  ${path}  <${fieldType(s)}>  default ${JSON.stringify(s.default)}\n      ${s.help}`);
    } else {
      lines.push(...describeSchema(s, path));
    }
  }
  return lines;
}
