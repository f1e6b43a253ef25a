// The thread pool: every thread is an instance of this module on one shared memory. The
// calling thread publishes a job (a task and its unit count) under a new generation number,
// wakes the workers, takes units itself, and spins until every unit is done. Units are claimed
// with a compare-and-swap on (generation, next unit), so a worker that wakes late can never
// claim a unit of a newer job by mistake.
#include "common.h"

__attribute__((import_module("env"), import_name("now_ms"))) double now_ms(void);

#define SPINS_BEFORE_SLEEP 200000
// A job that makes no progress for this long means a worker died mid-unit.
#define STALL_MS 20000.0

// The fields each thread writes sit on cache lines of their own: a unit's claim (cursor) and
// the units' completions (done) would otherwise bounce one line between the cores at every unit.
static struct {
  _Alignas(64) uint32_t generation;  // bumped for each job; workers wait on it
  task_fn fn;
  const void *ctx;
  int units;
  int threads;  // threads taking part, the caller included
  int sleepers;
  int failed;   // set by a worker that trapped, or by the stall watchdog
  _Alignas(64) uint64_t cursor;  // generation << 32 | next unit
  _Alignas(64) int done;         // units finished of the current job
  _Alignas(64) char end;
} pool = {.threads = 1};

EXPORT(pool_set_threads) void pool_set_threads(int n) { pool.threads = n < 1 ? 1 : n; }
EXPORT(pool_failed) int pool_failed(void) { return __atomic_load_n(&pool.failed, __ATOMIC_SEQ_CST); }
EXPORT(pool_fail) void pool_fail(int code) {
  __atomic_store_n(&pool.failed, code, __ATOMIC_SEQ_CST);
}

// Claims and runs units of generation `gen` until none is left; then counts them done, once.
static void run_units(uint32_t gen) {
  int ran = 0;
  for (;;) {
    uint64_t cur = __atomic_load_n(&pool.cursor, __ATOMIC_ACQUIRE);
    if ((uint32_t)(cur >> 32) != gen) break;
    int unit = (int)(uint32_t)cur;
    if (unit >= pool.units) break;
    if (!__atomic_compare_exchange_n(&pool.cursor, &cur, cur + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
    pool.fn(pool.ctx, unit, unit + 1);
    ran++;
  }
  if (ran) __atomic_fetch_add(&pool.done, ran, __ATOMIC_ACQ_REL);
}

void parallel_for(task_fn fn, const void *ctx, int units) {
  if (units <= 0 || pool.failed) return;
  if (pool.threads == 1 || units == 1) {
    fn(ctx, 0, units);
    return;
  }
  uint32_t gen = pool.generation + 1;
  pool.fn = fn;
  pool.ctx = ctx;
  pool.units = units;
  __atomic_store_n(&pool.done, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&pool.cursor, (uint64_t)gen << 32, __ATOMIC_RELEASE);
  __atomic_store_n(&pool.generation, gen, __ATOMIC_SEQ_CST);
#ifdef __wasm_atomics__
  if (__atomic_load_n(&pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
    __builtin_wasm_memory_atomic_notify((int *)&pool.generation, (unsigned)-1);
  }
#endif
  run_units(gen);
  int last = -1;
  double since = 0;
  for (unsigned spin = 0; __atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < units; spin++) {
    if ((spin & 0xffff) != 0) continue;
    if (pool.failed) return;
    int done = __atomic_load_n(&pool.done, __ATOMIC_ACQUIRE);
    double now = now_ms();
    if (done != last) {
      last = done;
      since = now;
    } else if (now - since > STALL_MS) {
      pool_fail(2);
      return;
    }
  }
}

#ifdef __wasm_atomics__
// A worker's life: wait for a new generation (spinning a while, then sleeping), run its units.
// (The single-threaded build, for pages without SharedArrayBuffer, has no workers.)
EXPORT(pool_worker) void pool_worker(void) {
  uint32_t seen = __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE);
  for (;;) {
    uint32_t gen;
    int spins = 0;
    while ((gen = __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE)) == seen) {
      if (++spins < SPINS_BEFORE_SLEEP) continue;
      __atomic_fetch_add(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
      __builtin_wasm_memory_atomic_wait32((int *)&pool.generation, (int)seen, -1);
      __atomic_fetch_sub(&pool.sleepers, 1, __ATOMIC_ACQ_REL);
      spins = 0;
    }
    seen = gen;
    if (pool.failed) return;
    run_units(gen);
  }
}
#endif
