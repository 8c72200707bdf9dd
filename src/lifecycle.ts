// The service's shutdown signal, carried to the vendor clients through their `fetch`: once it is
// aborted, every call in flight and every retry fails at once, and the engine hands its work back
// to the inbox (not counted as an attempt) instead of holding the process open.
//
// Signals here are held strongly for as long as their call lasts. A signal made by AbortSignal.any
// holds its sources weakly, and AbortSignal.timeout's timer holds its signal weakly too: once a
// garbage collection takes the combined signal (or the timeout it follows), the call has no timeout
// left and hangs on a server that never answers. That happened on a replica under a Marketo write
// whose answer never came (chaos seeds 211 and 213; reproduced with --expose-gc: every such call hung).

/** the combined signal of each response, kept while the response lives (its body is read later) */
const signalOfResponse = new WeakMap<Response, AbortSignal>();

/** `fetch` whose every request also ends when `signal` is aborted. */
export function fetchUntil(signal: AbortSignal, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const combined = init?.signal ? AbortSignal.any([init.signal, signal]) : signal;
    // held by this frame until the answer, then by the response until it is dropped
    const response = await base(input, { ...init, signal: combined });
    signalOfResponse.set(response, combined);
    return response;
  };
}

/**
 * Runs `call` with a signal that aborts with a TimeoutError after `ms`, like AbortSignal.timeout,
 * but held by its own timer (cleared when `call` ends): it cannot be collected while the call,
 * body included, still depends on it.
 */
export async function withTimeout<T>(ms: number, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
  try {
    return await call(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}
