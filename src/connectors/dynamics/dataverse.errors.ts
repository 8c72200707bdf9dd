import { ConnectorError, type ConnectorErrorKind, type ConnectorSystem } from '../errors.ts';

/** Dataverse platform codes the client branches on (reference §2.4, §2.5, §3, §4). */
export const DataverseCodes = {
  notFound: '0x80040217',
  concurrencyVersionMismatch: '0x80060882',
  duplicateRecord: '0x80040333',
  duplicateKey: '0x80040237',
  securedColumn: '0x8004f507',
  missingPrivilege: '0x80040220',
  expiredVersionStamp: '0x80044352',
  pluginError: '0x80040265',
  validationLength: '0x80044331',
  optionOutOfRange: '0x8004431a',
  queryError: '0x80060888',
  payloadError: '0x80048d19',
  requestsLimit: '0x80072322',
  executionTimeLimit: '0x80072321',
  concurrencyLimit: '0x80072326',
} as const;

// Codes that mean our own request was malformed (a bug on our side), never a user-fixable value.
const requestShapeCodes = new Set<string>([DataverseCodes.queryError, DataverseCodes.payloadError, '0x80060891']);

type ErrorOptions = { code?: string; httpStatus?: number; retryAfterMs?: number; cause?: unknown };

export class DataverseApiError extends ConnectorError {
  readonly system: ConnectorSystem = 'dynamics';
  /** HTTP method and endpoint of the failed call, e.g. "PATCH leads(<id>)" */
  readonly endpoint: string | undefined;

  constructor(kind: ConnectorErrorKind, message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super(kind, message, options);
    this.endpoint = options.endpoint;
  }
}

/** 400 from a business rule, plug-in, required field or bad option value; `message` is Dynamics' own text. */
export class DataverseValidationError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('validation', message, options);
  }
}

/** 403: missing table privilege, or a secured column the sync user may not write (0x8004f507). */
export class DataverseForbiddenError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('forbidden', message, options);
  }
  get securedColumn(): boolean {
    return this.code === DataverseCodes.securedColumn;
  }
}

export class DataverseNotFoundError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('not_found', message, options);
  }
}

/** 412: stale If-Match (0x80060882) or a duplicate key (0x80040237). Re-read and re-merge. */
export class DataverseConflictError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('conflict', message, options);
  }
}

export class DataverseRateLimitedError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('rate_limited', message, options);
  }
}

export class DataverseTransientError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('transient', message, options);
  }
}

/** The change-tracking token is gone: discard the delta link and redo the initial full read. */
export class DataverseDeltaExpiredError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('delta_expired', message, options);
  }
}

/** Token refused by Entra ID, or a 401 from Dataverse after one token renewal. */
export class DataverseAuthError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('auth', message, options);
  }
}

/** Anything else Dataverse refuses for good (malformed query or payload: a bug on our side). */
export class DataversePermanentError extends DataverseApiError {
  constructor(message: string, options: ErrorOptions & { endpoint?: string } = {}) {
    super('permanent', message, options);
  }
}

export function dataverseErrorFromResponse(
  status: number,
  code: string,
  message: string,
  options: { endpoint: string; retryAfterMs?: number },
): DataverseApiError {
  const base = { code, httpStatus: status, endpoint: options.endpoint };
  const text = message === '' ? `Dataverse answered HTTP ${status}` : message;
  if (code === DataverseCodes.expiredVersionStamp) return new DataverseDeltaExpiredError(text, base);
  // a duplicate rule refused the write: Microsoft's example answers 500, its status table 412, so
  // the code decides (reference dataverse §15). A refusal like a business rule's, not a retry.
  if (code === DataverseCodes.duplicateRecord) return new DataverseValidationError(text, base);
  if (status === 429) {
    return new DataverseRateLimitedError(
      text,
      options.retryAfterMs === undefined ? base : { ...base, retryAfterMs: options.retryAfterMs },
    );
  }
  if (status === 401) return new DataverseAuthError(text, base);
  if (status === 403) return new DataverseForbiddenError(text, base);
  if (status === 404) return new DataverseNotFoundError(text, base);
  if (status === 412) return new DataverseConflictError(text, base);
  if (status >= 500 || status === 408) return new DataverseTransientError(text, base);
  if (status === 400 && !requestShapeCodes.has(code)) return new DataverseValidationError(text, base);
  return new DataversePermanentError(text, base);
}
