import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// A vendor call's timeout must fire whatever the garbage collector does meanwhile. AbortSignal.any
// holds its sources weakly and AbortSignal.timeout's timer holds its signal weakly: combined with
// the shutdown signal, a collected timeout left calls hanging on a server that never answered (a
// replica's work stuck for minutes in chaos seeds 211 and 213). The child process collects the heap
// every 20 ms while its calls wait; the outcome is counted, not timed.

const child = fileURLToPath(new URL('../support/timeout-under-gc.child.ts', import.meta.url));

describe('vendor call timeouts under garbage collection', () => {
  it('end every call that gets no answer, or no end of its body, with a TimeoutError', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', child], { timeout: 60_000 });
    const outcomes = JSON.parse(stdout) as string[];
    expect(outcomes).toHaveLength(16);
    expect(outcomes.filter((o) => o !== 'TimeoutError')).toEqual([]);
  });
});
