// The service's shutdown signal, carried to the vendor clients through their `fetch`: once it is
// aborted, every call in flight and every retry fails at once, and the engine hands its work back
// to the inbox (not counted as an attempt) instead of holding the process open.

/** `fetch` whose every request also ends when `signal` is aborted. */
export function fetchUntil(signal: AbortSignal, base: typeof fetch = fetch): typeof fetch {
  return (input, init) => base(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal });
}
