import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MolmTokenizer } from '../../src/engine/tokenizer.ts';

const tokenizer = MolmTokenizer.fromJson(readFileSync(join(__dirname, '..', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8'));

describe('MoLM tokenizer', () => {
  // Encodings known from the reference tokenizer (docs/architecture.md, "The tokenizer").
  it.each([
    ['Hello world', [15496, 995]],
    ['a\t\tb', [64, 50294, 65]],
    ['def f(x):\n    return x  +  1', [4299, 277, 7, 87, 2599, 198, 50284, 7783, 2124, 50286, 10, 50286, 16]],
  ])('encodes %j', (text, ids) => {
    expect(tokenizer.encode(text)).toEqual(ids);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it('adds no BOS and keeps <|endoftext|> as id 50256', () => {
    expect(tokenizer.encode('x')[0]).not.toBe(50256);
    expect(tokenizer.encode('<|endoftext|>')).toEqual([50256]);
  });
});

describe('streaming detokenizer', () => {
  const texts = ['héllo 😀 日本語のテキスト', 'naïve café — “quotes” 🧑‍🚀 done', 'plain ascii text, no surprises'];
  it.each(texts)('emits %j piece by piece with no broken character', (text) => {
    const ids = tokenizer.encode(text);
    const stream = tokenizer.streamDecoder();
    const pieces = ids.map((id) => stream.push(id));
    pieces.push(stream.flush());
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
    expect(pieces.join('')).toBe(text);
  });

  it('holds back a character split across tokens until it is complete', () => {
    const ids = tokenizer.encode('😀');
    expect(ids.length).toBeGreaterThan(1); // the emoji's 4 UTF-8 bytes span several tokens
    const stream = tokenizer.streamDecoder();
    const out = ids.map((id) => stream.push(id));
    expect(out.slice(0, -1).every((p) => p === '')).toBe(true);
    expect(out.at(-1)).toBe('😀');
  });
});
