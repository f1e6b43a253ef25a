// Shared Vitest setup. GPU tests get their device from tests/gpu/harness.ts.
export {};
