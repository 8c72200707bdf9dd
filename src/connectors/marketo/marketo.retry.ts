import { backoffMs, type RetriesTaken, type RetryVerdict } from '../../retry.ts';
import { MarketoApiError } from './marketo.errors.ts';

// Which Marketo failures one call retries, and how long it waits (run by src/retry.ts). Pure: the
// transport applies the verdict's effects (a new token, a pause of every caller).

export type MarketoRetrySettings = {
  /** retries after 604/608/611/614/713, HTTP 5xx, network errors and timeouts */
  transientRetries: number;
  /** retries after 606/615 */
  rateLimitRetries: number;
  /** first transient backoff, doubled per retry, jittered */
  baseDelayMs: number;
  /** first 606/615 backoff */
  rateLimitDelayMs: number;
  /** cap of one backoff */
  maxDelayMs: number;
};

export const defaultMarketoRetry: MarketoRetrySettings = {
  transientRetries: 4,
  // about three minutes of backoff, enough to ride out a storm
  rateLimitRetries: 12,
  baseDelayMs: 500,
  // Adobe: back off at least a few seconds, up to 20 s
  rateLimitDelayMs: 2000,
  // a full rate window
  maxDelayMs: 20_000,
};

export type MarketoRetryEffects = {
  /** forget the token before the replay (601/602/HTTP 401: invalid, expired or revoked) */
  renewToken?: boolean;
  /** every caller of this client holds back for `waitMs` too (606: the instance's rate window is spent) */
  pauseEveryone?: boolean;
};

export type MarketoVerdict = RetryVerdict<MarketoRetryEffects>;

/**
 * `idempotent: false` is a write Marketo may have applied before it failed: Marketo has no
 * conditional write, so it is never sent again blindly (see `marketoRetryVerdict`).
 */
export function marketoRetryVerdict(error: unknown, taken: RetriesTaken, settings: MarketoRetrySettings, request: { idempotent: boolean }): MarketoVerdict {
  if (!(error instanceof MarketoApiError)) return { retry: false };
  if (error.kind === 'auth' && error.endpoint !== 'identity' && (taken['auth'] ?? 0) === 0) {
    // token invalid/expired/revoked: renew once and replay the same request
    return { retry: true, as: 'auth', waitMs: 0, renewToken: true };
  }
  const rateLimited = taken['rateLimit'] ?? 0;
  if (error.kind === 'rate_limited' && rateLimited < settings.rateLimitRetries) {
    const waitMs = backoffMs({ baseMs: settings.rateLimitDelayMs, maxMs: settings.maxDelayMs, jitter: 'equal' }, rateLimited, { hintMs: error.retryAfterMs });
    return { retry: true, as: 'rateLimit', waitMs, pauseEveryone: error.code === '606' };
  }
  // A write whose first try may have landed (a timeout, a dropped connection, a 5xx, or a 604, 611
  // or 713 that Marketo gives for work it may have done) is not sent again: the caller re-reads and
  // plans again, so an edit made since that try is merged, not overwritten. Rate limits and token
  // errors are refused before Marketo applies anything (above).
  const transient = taken['transient'] ?? 0;
  if (error.kind === 'transient' && request.idempotent && transient < settings.transientRetries) {
    const waitMs = backoffMs({ baseMs: settings.baseDelayMs, maxMs: settings.maxDelayMs, jitter: 'equal' }, transient, { hintMs: error.retryAfterMs });
    return { retry: true, as: 'transient', waitMs };
  }
  return { retry: false };
}
