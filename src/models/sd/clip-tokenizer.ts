// CLIP's byte-level BPE tokenizer, read from the files the user supplies: transformers' vocab.json +
// merges.txt (what a Stable Diffusion pipeline's tokenizer/ folder holds) or a tokenizers
// tokenizer.json. Text is cleaned, split by CLIP's regex, mapped to GPT-2's byte alphabet and
// merged by rank with "</w>" marking the end of each word; BOS/EOS wrap the ids, padding and
// truncation work as tokenizer(prompt, padding="max_length", max_length=77, truncation=True).
// Two cleanups, one per reference: 'slow' is transformers' CLIPTokenizer as diffusers' pipelines
// load it without ftfy installed (BasicTokenizer: NFC, control characters dropped, CJK ideographs
// split apart, lowercase), 'fast' the tokenizers library's CLIP normalizer (NFC, whitespace runs
// to one space, lowercase). They agree on text without control characters or CJK ideographs.
// (With ftfy installed the slow tokenizer also runs ftfy.fix_text, which is not reproduced.)
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../../torch';
import { Tensor } from '../../torch';

/** CLIP's pre-tokenisation pattern (special tokens, contractions, letter runs, single digits, other symbol runs). */
const PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

export const END_OF_WORD = '</w>';

/** GPT-2's reversible byte -> printable character table (bytes_to_unicode). */
export function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : 256 + next++);
  return table;
}

const BYTE_CHARS = bytesToUnicode();

export type ClipTextCleanup = 'slow' | 'fast';

/** CJK ideograph blocks, as BERT's BasicTokenizer lists them (each such character becomes a word). */
const CJK = /[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}]/gu;
/** BasicTokenizer's _clean_text: U+FFFD and every "C*" category character (control, format, private use, unassigned) but tab, CR, LF go. */
const DROPPED = /\uFFFD|(?![\t\n\r])\p{C}/gu;
/** BasicTokenizer's whitespace: space, tab, CR, LF and the Zs category. */
const BASIC_WHITESPACE = /[ \t\n\r\p{Zs}]/gu;

/** The text the regex sees under each cleanup. */
export function cleanText(text: string, cleanup: ClipTextCleanup): string {
  if (cleanup === 'fast') return text.normalize('NFC').replace(/\s+/gu, ' ').trim().toLowerCase();
  // BasicTokenizer's order: clean, space out CJK, NFC, split on whitespace, lowercase each word.
  const cleaned = text.replace(DROPPED, '').replace(BASIC_WHITESPACE, ' ').replace(CJK, (c) => ` ${c} `).normalize('NFC');
  return cleaned.split(/\s+/u).filter((w) => w.length > 0).map((w) => w.toLowerCase()).join(' ');
}

export interface ClipTokenizerSpec {
  /** token -> id */
  vocab: Map<string, number>;
  /** merge pairs in rank order ("a b" means a + b -> ab). */
  merges: [string, string][];
  bosToken?: string;
  eosToken?: string;
  /** Padding token; default the EOS token (SD 1.x's tokenizer pads with <|endoftext|>). */
  padToken?: string;
  unkToken?: string;
  /** model_max_length: 77 for CLIP. */
  modelMaxLength?: number;
  /** Default 'slow' (what SD pipelines' CLIPTokenizer does); tokenizer.json files read as 'fast'. */
  cleanup?: ClipTextCleanup;
}

export interface EncodeOptions {
  /** 'max_length' pads to maxLength (what SD pipelines ask for), false leaves the length as is. */
  padding?: 'max_length' | false;
  /** Default the tokenizer's modelMaxLength (77). */
  maxLength?: number;
  /** Cut to maxLength keeping BOS and a final EOS (default true). */
  truncation?: boolean;
}

export interface BatchEncoding {
  /** int64 [B, L] */
  inputIds: Tensor;
  /** int64 [B, L]: 1 on BOS, the text and EOS, 0 on padding. */
  attentionMask: Tensor;
}

export class ClipTokenizer {
  readonly vocab: Map<string, number>;
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly modelMaxLength: number;
  readonly cleanup: ClipTextCleanup;
  private readonly specials: Map<string, number>;

  constructor(spec: ClipTokenizerSpec) {
    this.vocab = spec.vocab;
    // A repeated pair keeps its last rank, as transformers' dict(zip(merges, range(n))).
    spec.merges.forEach(([a, b], rank) => this.ranks.set(`${a} ${b}`, rank));
    const id = (token: string, role: string): number => {
      const v = this.vocab.get(token);
      if (v === undefined) throw new Error(`CLIP tokenizer: the ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      return v;
    };
    const bos = spec.bosToken ?? '<|startoftext|>';
    const eos = spec.eosToken ?? '<|endoftext|>';
    this.bosId = id(bos, 'BOS');
    this.eosId = id(eos, 'EOS');
    this.padId = id(spec.padToken ?? eos, 'padding');
    this.unkId = id(spec.unkToken ?? eos, 'unknown');
    this.modelMaxLength = spec.modelMaxLength ?? 77;
    this.cleanup = spec.cleanup ?? 'slow';
    this.specials = new Map([[bos, this.bosId], [eos, this.eosId]]);
  }

  /** BPE of one pre-token (already in the byte alphabet): its sub-word strings, the last ending in </w>. */
  bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const chars = [...token];
    let word = [...chars.slice(0, -1), chars[chars.length - 1] + END_OF_WORD];
    while (word.length > 1) {
      // The adjacent pair with the lowest merge rank; none ranked ends the loop.
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const first = word[best];
      const second = word[best + 1];
      // Merge every non-overlapping occurrence, left to right, as the reference does.
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) { merged.push(first + second); i += 2; }
        else merged.push(word[i++]);
      }
      word = merged;
    }
    this.cache.set(token, word);
    return word;
  }

  /** The ids of a text without BOS/EOS. */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    for (const match of cleanText(text, this.cleanup).matchAll(PATTERN)) {
      const piece = match[0];
      const special = this.specials.get(piece);
      if (special !== undefined) { ids.push(special); continue; }
      const bytes = Buffer.from(piece, 'utf8');
      let mapped = '';
      for (const b of bytes) mapped += BYTE_CHARS[b];
      for (const sub of this.bpe(mapped)) ids.push(this.vocab.get(sub) ?? this.unkId);
    }
    return ids;
  }

  /** BOS + ids + EOS, truncated and padded as asked. */
  encode(text: string, o: EncodeOptions = {}): { ids: number[]; mask: number[] } {
    const maxLength = o.maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`CLIP tokenizer: maxLength must be an integer >= 2, got ${maxLength}`);
    let body = this.tokenize(text);
    if ((o.truncation ?? true) && body.length > maxLength - 2) body = body.slice(0, maxLength - 2);
    const ids = [this.bosId, ...body, this.eosId];
    const mask = ids.map(() => 1);
    if ((o.padding ?? 'max_length') === 'max_length') {
      while (ids.length < maxLength) { ids.push(this.padId); mask.push(0); }
    }
    return { ids, mask };
  }

  /** A batch as int64 tensors; every row must come out the same length (pad to max_length). */
  call(texts: string | string[], o: EncodeOptions = {}): BatchEncoding {
    const rows = (typeof texts === 'string' ? [texts] : texts).map((t) => this.encode(t, o));
    const L = rows[0]?.ids.length ?? 0;
    if (rows.some((r) => r.ids.length !== L)) throw new Error('CLIP tokenizer: rows differ in length: pass padding "max_length" to batch them');
    const flat = (k: 'ids' | 'mask'): Tensor => torch.fromTypedArray(BigInt64Array.from(rows.flatMap((r) => r[k]).map(BigInt)), [rows.length, L]);
    return { inputIds: flat('ids'), attentionMask: flat('mask') };
  }

  /** The text of ids (special tokens kept, </w> as spaces), for inspection. */
  decode(ids: readonly number[]): string {
    const byId = new Map([...this.vocab].map(([k, v]) => [v, k]));
    const byteOf = new Map(BYTE_CHARS.map((c, b) => [c, b]));
    const text = ids.map((i) => byId.get(i) ?? '').join('');
    const out: number[] = [];
    for (const ch of text.replaceAll(END_OF_WORD, ' ')) {
      const b = byteOf.get(ch);
      if (b !== undefined) out.push(b);
      else out.push(...Buffer.from(ch, 'utf8'));
    }
    return Buffer.from(out).toString('utf8').trim();
  }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not readable JSON (${(e as Error).message})`);
  }
}

function vocabFrom(value: unknown, where: string): Map<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected an object of token -> id`);
  const vocab = new Map<string, number>();
  for (const [k, v] of Object.entries(value)) {
    if (!Number.isInteger(v)) throw new Error(`${where}: token ${JSON.stringify(k)} has id ${JSON.stringify(v)}, expected an integer`);
    vocab.set(k, v as number);
  }
  return vocab;
}

/** transformers' CLIPTokenizer reads at most this many merges (CLIP's 49408 tokens = 2 * 256 bytes + merges + 2 specials). */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;

/** merges.txt: a "#version" line, then one "a b" pair per line (at most CLIP_MAX_MERGES are used, as transformers does). */
export function parseMerges(text: string, where: string): [string, string][] {
  const lines = text.split(/\r?\n/);
  const first = lines[0]?.startsWith('#version') ? 1 : 0;
  const merges: [string, string][] = [];
  for (let i = first; i < lines.length && merges.length < CLIP_MAX_MERGES; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new Error(`${where}: line ${i + 1}: expected two tokens separated by a space, got ${JSON.stringify(line)}`);
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

/** A token field of special_tokens_map.json / tokenizer_config.json: a string or {content}. */
function tokenField(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** Special tokens and max length from special_tokens_map.json / tokenizer_config.json beside the vocab. */
function specialsFrom(dir: string): Partial<ClipTokenizerSpec> {
  const out: Partial<ClipTokenizerSpec> = {};
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    const json = readJson(file) as Record<string, unknown>;
    out.bosToken = tokenField(json.bos_token) ?? out.bosToken;
    out.eosToken = tokenField(json.eos_token) ?? out.eosToken;
    out.padToken = tokenField(json.pad_token) ?? out.padToken;
    out.unkToken = tokenField(json.unk_token) ?? out.unkToken;
    const max = json.model_max_length;
    // transformers writes a huge sentinel when no length is known.
    if (typeof max === 'number' && Number.isInteger(max) && max > 0 && max < 1e6) out.modelMaxLength = max;
  }
  return out;
}

/** tokenizer.json (the tokenizers library): a BPE model with vocab and merges ("a b" or ["a", "b"]). */
export function tokenizerSpecFromJson(json: Record<string, unknown>, where: string): ClipTokenizerSpec {
  const model = json.model as Record<string, unknown> | undefined;
  if (!model || typeof model !== 'object') throw new Error(`${where}: no 'model' object`);
  if (model.type !== undefined && model.type !== 'BPE') throw new Error(`${where}: model.type is ${JSON.stringify(model.type)}, expected "BPE"`);
  if (model.end_of_word_suffix !== undefined && model.end_of_word_suffix !== null && model.end_of_word_suffix !== END_OF_WORD) {
    throw new Error(`${where}: model.end_of_word_suffix is ${JSON.stringify(model.end_of_word_suffix)}, CLIP's is "${END_OF_WORD}"`);
  }
  const vocab = vocabFrom(model.vocab, `${where}: model.vocab`);
  if (!Array.isArray(model.merges)) throw new Error(`${where}: model.merges must be a list`);
  const merges = (model.merges as unknown[]).map((m, i): [string, string] => {
    const pair = typeof m === 'string' ? m.split(' ') : m;
    if (!Array.isArray(pair) || pair.length !== 2 || pair.some((p) => typeof p !== 'string')) {
      throw new Error(`${where}: model.merges[${i}] must be "a b" or ["a", "b"], got ${JSON.stringify(m)}`);
    }
    return [pair[0], pair[1]];
  });
  const spec: ClipTokenizerSpec = { vocab, merges, cleanup: 'fast' };
  if (typeof model.unk_token === 'string') spec.unkToken = model.unk_token;
  const padding = json.padding as Record<string, unknown> | null | undefined;
  if (padding && typeof padding.pad_token === 'string') spec.padToken = padding.pad_token;
  const truncation = json.truncation as Record<string, unknown> | null | undefined;
  if (truncation && typeof truncation.max_length === 'number') spec.modelMaxLength = truncation.max_length;
  return spec;
}

/**
 * A tokenizer from a folder (a pipeline's tokenizer/ or the pipeline folder itself) holding
 * vocab.json + merges.txt or tokenizer.json, or from a tokenizer.json / vocab.json path;
 * special_tokens_map.json / tokenizer_config.json beside them set BOS/EOS/padding.
 */
export function loadClipTokenizer(pathOrDir: string): ClipTokenizer {
  if (!fs.existsSync(pathOrDir)) throw new Error(`${pathOrDir}: no such tokenizer file or folder`);
  let dir = pathOrDir;
  let file: string | null = null;
  if (fs.statSync(pathOrDir).isDirectory()) {
    const sub = path.join(pathOrDir, 'tokenizer');
    const has = (d: string): boolean => ['vocab.json', 'tokenizer.json'].some((f) => fs.existsSync(path.join(d, f)));
    if (!has(pathOrDir) && has(sub)) dir = sub;
  } else {
    dir = path.dirname(pathOrDir);
    file = pathOrDir;
  }
  const vocabFile = path.join(dir, 'vocab.json');
  const mergesFile = path.join(dir, 'merges.txt');
  const jsonFile = path.join(dir, 'tokenizer.json');
  let spec: ClipTokenizerSpec;
  if ((file === null || file === vocabFile) && fs.existsSync(vocabFile) && fs.existsSync(mergesFile)) {
    spec = { vocab: vocabFrom(readJson(vocabFile), vocabFile), merges: parseMerges(fs.readFileSync(mergesFile, 'utf8'), mergesFile) };
  } else if ((file !== null && file !== vocabFile) || fs.existsSync(jsonFile)) {
    const f = file ?? jsonFile;
    const json = readJson(f);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${f}: expected a JSON object`);
    spec = tokenizerSpecFromJson(json as Record<string, unknown>, f);
  } else {
    throw new Error(`${pathOrDir}: no CLIP tokenizer files (expected vocab.json + merges.txt, or tokenizer.json)`);
  }
  return new ClipTokenizer({ ...spec, ...definedOnly(specialsFrom(dir)) });
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
