// The model molm-web ships (tools/train → molm convert → public/models/), used by the tests
// that need real text: a trained MoLM with the real tokenizer.
export const BUILT_IN_MODEL = {
  /** The converted folder, relative to the repository root (Node). */
  dir: 'public/models/molm-brown',
  /** The same folder as the Vite server publishes it (relative to the server's root URL). */
  url: 'models/molm-brown/',
};
