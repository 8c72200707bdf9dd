import { backoffMs, type RetriesTaken, type RetryVerdict } from '../../retry.ts';
import { DataverseApiError, DataverseCodes, DataverseTransientError } from './dataverse.errors.ts';

// Which Dataverse failures one call retries, and how (run by src/retry.ts). Pure: the transport
// applies the verdict's effects (a new token, the pacer's pause, a smaller next $batch). A request
// refused with 429 did not run, so it is always safe to resend; a $batch lost to a timeout or a 5xx
// is resent as it was, because each of its writes is safe to repeat (dataverse.writes.ts).

export type DataverseRetrySettings = {
  /** retries of one call after 5xx/network/timeout */
  transientRetries: number;
  /** retries of one call after 429 (each waits the Retry-After the server asked for) */
  rateLimitRetries: number;
  /** first backoff for transient retries, doubled each time */
  retryBaseDelayMs: number;
};

export const defaultDataverseRetry: DataverseRetrySettings = { transientRetries: 3, rateLimitRetries: 10, retryBaseDelayMs: 500 };

export type DataverseRetryEffects = {
  /** forget the token the refused request carried (a 401: revoked or expired early) */
  renewToken?: boolean;
  /** pause every request of the user this long, then restart slowly (a 429, retried or not) */
  throttleMs?: number;
  /** the next $batch carries fewer operations (a 429 for execution time) */
  shrinkBatch?: boolean;
};

export type DataverseVerdict = RetryVerdict<DataverseRetryEffects>;

export function dataverseRetryVerdict(error: unknown, taken: RetriesTaken, settings: DataverseRetrySettings): DataverseVerdict {
  if (!(error instanceof DataverseApiError)) return { retry: false };
  // a token the token endpoint refused is not renewed by asking again
  if (error.httpStatus === 401 && error.endpoint !== 'POST token' && (taken['auth'] ?? 0) === 0) {
    return { retry: true, as: 'auth', waitMs: 0, renewToken: true };
  }
  if (error.kind === 'rate_limited') {
    const rateLimited = taken['rateLimit'] ?? 0;
    // the docs: wait exactly Retry-After, and pause every request of the user meanwhile (the pacer
    // holds them, this call included, so the retry itself waits for nothing more)
    const effects = {
      throttleMs: error.retryAfterMs ?? 1000 * 2 ** Math.min(rateLimited, 6),
      ...(error.code === DataverseCodes.executionTimeLimit ? { shrinkBatch: true } : {}),
    };
    return rateLimited < settings.rateLimitRetries ? { retry: true, as: 'rateLimit', waitMs: 0, ...effects } : { retry: false, ...effects };
  }
  const transient = taken['transient'] ?? 0;
  if (error instanceof DataverseTransientError && transient < settings.transientRetries) {
    return { retry: true, as: 'transient', waitMs: backoffMs({ baseMs: settings.retryBaseDelayMs, jitter: 'none' }, transient) };
  }
  return { retry: false };
}
