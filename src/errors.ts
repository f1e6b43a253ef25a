/**
 * Errors a caller can act on. Each message says what went wrong and what to do next.
 * Test with `instanceof`, or with `error.name` across a worker boundary.
 */
export class MolmError extends Error {
  // Spelled out, not new.target.name: a minifier renames classes, and `name` must survive
  // the production bundles and the trip across the worker boundary.
  override name = 'MolmError';
}

/** A checkpoint, shard, manifest or config that cannot be read as the model it claims to be. */
export class ModelFormatError extends MolmError {
  override name = 'ModelFormatError';
}

/** No WebGPU, or an adapter that lacks a feature or limit the model needs. */
export class DeviceLimitError extends MolmError {
  override name = 'DeviceLimitError';
}

/** The GPU device was lost (driver reset, out of memory, tab backgrounded too long). */
export class DeviceLostError extends MolmError {
  override name = 'DeviceLostError';
}

/** A compute thread of the WebAssembly engine died (a trap, a crash): create a new engine. */
export class ComputeThreadError extends MolmError {
  override name = 'ComputeThreadError';
}

/** A prompt or generation that does not fit the context the engine was created with. */
export class ContextLengthError extends MolmError {
  override name = 'ContextLengthError';
}

/** Browser storage is full, or the model will not fit in it. */
export class QuotaError extends MolmError {
  override name = 'QuotaError';
}

/** The caller aborted an operation through its AbortSignal. */
export class AbortError extends MolmError {
  override name = 'AbortError';
}

/** Invalid arguments to an API call or a CLI command. */
export class UsageError extends MolmError {
  override name = 'UsageError';
}
