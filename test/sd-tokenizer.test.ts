// CLIP's BPE tokenizer on a tiny vocabulary and merge list written here, with tokenisations worked
// out by hand from the algorithm (CLIP's regex, GPT-2's byte alphabet, merges by rank, "</w>" at
// word ends), the file formats (vocab.json + merges.txt, tokenizer.json), and the conventions of
// the sd-controlnet-ref fixture's input_ids (BOS, EOS, EOS padding, attention mask).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { get, loadFixture } from './helpers/dit-ref';
import { SD_FIXTURES, skipUnlessSdFixtures } from './helpers/sd-formula-weights';
import { bytesToUnicode, cleanText, ClipTokenizer, loadClipTokenizer, parseMerges } from '../src/models/sd/clip-tokenizer';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-tok-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const VOCAB: Record<string, number> = {
  '!</w>': 5, '?!</w>': 6, 'hello</w>': 7, worl: 8, 'd</w>': 9, '<|startoftext|>': 10, '<|endoftext|>': 11,
  he: 12, l: 13, 'l</w>': 14, ll: 15, 'it</w>': 16, "'s</w>": 17, '2</w>': 18, '0</w>': 19, c: 20, a: 21, f: 22,
  'Ã': 23, '©</w>': 24, 'ok</w>': 25,
};
// Rank order matters: h+e first, then l+l, ...
const MERGES: [string, string][] = [['h', 'e'], ['l', 'l'], ['ll', 'o</w>'], ['he', 'llo</w>'], ['w', 'o'], ['r', 'l'], ['wo', 'rl'],
  ['i', 't</w>'], ["'", 's</w>'], ['?', '!</w>'], ['o', 'k</w>']];

const tiny = (extra: Partial<ConstructorParameters<typeof ClipTokenizer>[0]> = {}): ClipTokenizer =>
  new ClipTokenizer({ vocab: new Map(Object.entries(VOCAB)), merges: MERGES, ...extra });

test('GPT-2 byte alphabet: printable bytes map to themselves, the rest to U+0100 upward', () => {
  const t = bytesToUnicode();
  assert.equal(t.length, 256);
  assert.equal(new Set(t).size, 256);
  assert.equal(t[0x41], 'A');
  assert.equal(t[0xe9], 'é');
  assert.equal(t[0x00], '\u0100');
  assert.equal(t[0x20], '\u0120'); // space: 'Ġ'
  assert.equal(t[0x7f], '\u0121');
  assert.equal(t[0xad], '\u0143'); // soft hyphen: 'Ń'
});

test('BPE merges by rank until no ranked pair is left; "</w>" separates word-final tokens', () => {
  const tok = tiny();
  // hello: h e l l o</w> -> he l l o</w> -> he ll o</w> -> he llo</w> -> hello</w>
  assert.deepEqual(tok.bpe('hello'), ['hello</w>']);
  // world: w o r l d</w> -> wo r l d</w> -> wo rl d</w> -> worl d</w>
  assert.deepEqual(tok.bpe('world'), ['worl', 'd</w>']);
  // hell: he l l</w>: "l l" is not "l l</w>", so it stops there.
  assert.deepEqual(tok.bpe('hell'), ['he', 'l', 'l</w>']);
  // Every non-overlapping occurrence of the best pair merges in one pass, left to right.
  assert.deepEqual(tok.bpe('lllll'), ['ll', 'll', 'l</w>']);
  assert.deepEqual(tok.bpe('x'), ['x</w>']);
});

test('encode: cleanup, CLIP regex, BOS/EOS and EOS padding to max_length', () => {
  const tok = tiny();
  // "  Hello \n World!  " -> "hello world!" -> [hello] [world] [!]
  assert.deepEqual(tok.encode('  Hello \n World!  ', { maxLength: 8 }), {
    ids: [10, 7, 8, 9, 5, 11, 11, 11], mask: [1, 1, 1, 1, 1, 1, 0, 0],
  });
  // Contractions, single digits, runs of other symbols: it 's 2 0 2 ?!
  assert.deepEqual(tok.tokenize("It's 202?!"), [16, 17, 18, 19, 18, 6]);
  // Non-ASCII letters go through UTF-8 bytes: é = c3 a9 -> 'Ã' '©'; NFC first, so e + combining acute is the same.
  assert.deepEqual(tok.tokenize('CAFÉ'), [20, 21, 22, 23, 24]);
  assert.deepEqual(tok.tokenize('cafe\u0301'), [20, 21, 22, 23, 24]);
  // Unknown sub-words become the unknown token (<|endoftext|> for CLIP).
  assert.deepEqual(tok.tokenize('zz'), [11, 11]);
  // Special tokens written in the text keep their ids.
  assert.deepEqual(tok.tokenize('ok<|endoftext|>ok'), [25, 11, 25]);
  assert.deepEqual(tok.encode('', { maxLength: 4 }).ids, [10, 11, 11, 11]);
  assert.deepEqual(tok.encode('hello', { padding: false }).ids, [10, 7, 11]);
  assert.equal(tok.encode('hello').ids.length, 77, 'model_max_length 77 by default');
  assert.equal(tok.decode(tok.tokenize('Hello world')), 'hello world');
});

test('cleanups: the slow tokenizer (pipelines) drops control/format characters and splits CJK ideographs; the fast one does not', () => {
  assert.equal(cleanText('A\u0000b\u200Bc \u00A0 D\t', 'slow'), 'abc d');
  assert.equal(cleanText('A\u0000b\u200Bc \u00A0 D\t', 'fast'), 'a\u0000b\u200Bc d');
  assert.equal(cleanText('你好 World', 'slow'), '你 好 world');
  assert.equal(cleanText('你好 World', 'fast'), '你好 world');
  // 你 = e4 bd a0 -> 'ä' '½' 'ł' (a0 is not printable: U+0142); 好 = e5 a5 bd -> 'å' '¥' '½'.
  const vocab = { ...VOCAB, 'ä': 30, '½': 31, 'ł</w>': 32, 'ł': 33, 'å': 34, '¥': 35, '½</w>': 36 };
  const make = (cleanup: 'slow' | 'fast'): ClipTokenizer => new ClipTokenizer({ vocab: new Map(Object.entries(vocab)), merges: MERGES, cleanup });
  assert.deepEqual(make('slow').tokenize('你好'), [30, 31, 32, 34, 35, 36]);
  assert.deepEqual(make('fast').tokenize('你好'), [30, 31, 33, 34, 35, 36]);
  assert.equal(tiny().cleanup, 'slow', 'vocab.json + merges.txt read as transformers\' CLIPTokenizer');
});

test('truncation keeps BOS, the first max_length - 2 tokens and a final EOS', () => {
  const tok = tiny();
  assert.deepEqual(tok.encode('ok ok ok ok ok ok', { maxLength: 5 }), { ids: [10, 25, 25, 25, 11], mask: [1, 1, 1, 1, 1] });
  assert.equal(tok.encode('ok ok ok ok ok ok', { maxLength: 5, truncation: false, padding: false }).ids.length, 8);
  const batch = tok.call(['ok', 'hello world'], { maxLength: 6 });
  assert.deepEqual(batch.inputIds.tolist(), [[10, 25, 11, 11, 11, 11], [10, 7, 8, 9, 11, 11]]);
  assert.deepEqual(batch.attentionMask.tolist(), [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]);
  assert.equal(batch.inputIds.dtype, 'int64');
  assert.throws(() => tok.call(['ok', 'hello world'], { padding: false }), /rows differ in length/);
});

const skip = skipUnlessSdFixtures(['sd-controlnet-ref.safetensors'], 'fixture input_ids conventions');

test('the fixture\'s input_ids follow these conventions: BOS 998, EOS 999, padded with EOS, mask up to the first EOS', { skip }, () => {
  const fx = loadFixture(SD_FIXTURES, 'sd-controlnet-ref.safetensors');
  const ids = get(fx, 'input.input_ids').tolist() as number[][];
  const mask = get(fx, 'input.attention_mask').tolist() as number[][];
  // The fixture's tiny vocabulary: its specials and the five word ids of row 1.
  const words = ['one', 'two', 'three', 'four', 'five'];
  const vocab = new Map<string, number>([['<|startoftext|>', 998], ['<|endoftext|>', 999]]);
  ids[1].slice(1, 6).forEach((id, i) => vocab.set(`${words[i]}</w>`, id));
  const merges = words.flatMap((w) => [...w].slice(1).map((_, i, rest): [string, string] => [w.slice(0, i + 1), i === rest.length - 1 ? `${rest[i]}</w>` : rest[i]]));
  const tok = new ClipTokenizer({ vocab, merges, modelMaxLength: 8 });
  const batch = tok.call(['', 'One two three four five']);
  assert.deepEqual(batch.inputIds.tolist(), ids);
  assert.deepEqual(batch.attentionMask.tolist(), mask);
  for (const t of fx.values()) t.dispose();
});

test('files: vocab.json + merges.txt (with special_tokens_map.json) and tokenizer.json read the same', () => {
  const dir = path.join(tmp, 'pipeline', 'tokenizer');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify(VOCAB));
  fs.writeFileSync(path.join(dir, 'merges.txt'), `#version: 0.2\n${MERGES.map((m) => m.join(' ')).join('\n')}\n`);
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 6, bos_token: { content: '<|startoftext|>' } }));
  // SD 2.x pads with "!" instead of <|endoftext|>.
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: '!</w>', eos_token: '<|endoftext|>' }));
  const fromPipeline = loadClipTokenizer(path.join(tmp, 'pipeline'));
  assert.deepEqual(fromPipeline.encode('hello').ids, [10, 7, 11, 5, 5, 5]);
  const jsonDir = path.join(tmp, 'json');
  fs.mkdirSync(jsonDir);
  const merges = MERGES.map((m, i) => (i % 2 ? m : m.join(' '))); // both spellings tokenizers has used
  fs.writeFileSync(path.join(jsonDir, 'tokenizer.json'), JSON.stringify({
    model: { type: 'BPE', vocab: VOCAB, merges, end_of_word_suffix: '</w>', unk_token: '<|endoftext|>' },
  }));
  const fromJson = loadClipTokenizer(path.join(jsonDir, 'tokenizer.json'));
  for (const text of ['Hello World!', "it's 2020?!", 'café ok']) assert.deepEqual(fromJson.tokenize(text), fromPipeline.tokenize(text), text);
  assert.equal(fromJson.padId, 11);
  assert.equal(fromJson.cleanup, 'fast', 'tokenizer.json follows the tokenizers library');
  assert.equal(fromPipeline.cleanup, 'slow');
});

test('bad tokenizer files give errors naming the file and what was expected', () => {
  assert.throws(() => parseMerges('#version: 0.2\na b\nabc\n', 'merges.txt'), /merges\.txt: line 3: expected two tokens/);
  assert.throws(() => parseMerges('a b\nx y z\n', 'merges.txt'), /merges\.txt: line 2: expected two tokens/);
  // Like transformers, only the first 48894 merges (CLIP's count) are read.
  const many = `#version: 0.2\n${Array.from({ length: 48900 }, (_, i) => `a${i} b`).join('\n')}\n`;
  const parsed = parseMerges(many, 'merges.txt');
  assert.equal(parsed.length, 48894);
  assert.deepEqual(parsed[48893], ['a48893', 'b']);
  assert.throws(() => new ClipTokenizer({ vocab: new Map([['a', 1]]), merges: [] }), /BOS token "<\|startoftext\|>" is not in the vocabulary/);
  const dir = path.join(tmp, 'bad');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
  assert.throws(() => loadClipTokenizer(dir), /tokenizer\.json: model\.type is "WordPiece", expected "BPE"/);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{ not json');
  assert.throws(() => loadClipTokenizer(dir), /tokenizer\.json: not readable JSON/);
  assert.throws(() => loadClipTokenizer(path.join(tmp, 'empty-missing')), /no such tokenizer file or folder/);
  fs.mkdirSync(path.join(tmp, 'empty'));
  assert.throws(() => loadClipTokenizer(path.join(tmp, 'empty')), /no CLIP tokenizer files \(expected vocab\.json \+ merges\.txt, or tokenizer\.json\)/);
});
