// The small union of failure kinds the engine branches on, shared by both connectors.
// Each connector subclasses ConnectorError with its vendor's code and message.
export type ConnectorErrorKind =
  | 'rate_limited' // back off, retry later (Marketo 606/615, Dataverse 429)
  | 'quota_exhausted' // no retry until the daily reset (Marketo 607)
  | 'auth' // token expired/invalid after one renewal (Marketo 601/602, HTTP 401)
  | 'transient' // timeouts, 5xx, Marketo 604/608/611/713: retry with backoff
  | 'validation' // the vendor refused the values (Dataverse business rule/plugin, bad option)
  | 'forbidden' // privilege or column security (Dataverse 403, 0x8004f507)
  | 'not_found'
  | 'conflict' // stale ETag (Dataverse 412)
  | 'delta_expired' // Dataverse change-tracking token no longer valid (0x80044352)
  | 'permanent'; // anything else the vendor refuses for good

export type ConnectorSystem = 'marketo' | 'dynamics';

export abstract class ConnectorError extends Error {
  abstract readonly system: ConnectorSystem;
  readonly kind: ConnectorErrorKind;
  /** the vendor's own code (Marketo "606", Dataverse "0x80040217"), when it gave one */
  readonly code: string | undefined;
  readonly httpStatus: number | undefined;
  /** milliseconds the vendor asked us to wait (Retry-After), when it said */
  readonly retryAfterMs: number | undefined;

  constructor(
    kind: ConnectorErrorKind,
    message: string,
    options: { code?: string; httpStatus?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.code = options.code;
    this.httpStatus = options.httpStatus;
    this.retryAfterMs = options.retryAfterMs;
  }

  get retryable(): boolean {
    return this.kind === 'rate_limited' || this.kind === 'transient' || this.kind === 'auth';
  }
}

/** A fetch that failed because its timeout signal fired (or it was aborted), not the network. */
export function isTimeout(cause: unknown): boolean {
  return cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
}
