/** A URL the engine fetches, as opposed to a local folder (Node) or a path relative to the page. */
export const isUrl = (s: string) => /^(https?|blob|data):/i.test(s);
