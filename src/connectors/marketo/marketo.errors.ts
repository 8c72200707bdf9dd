import { ConnectorError, type ConnectorErrorKind } from '../errors.ts';

export const MarketoCodes = {
  accessTokenInvalid: '601',
  accessTokenExpired: '602',
  accessDenied: '603',
  requestTimeout: '604',
  rateLimited: '606',
  dailyQuota: '607',
  temporarilyUnavailable: '608',
  systemError: '611',
  invalidSubscription: '614',
  concurrencyLimited: '615',
  transientError: '713',
} as const;

const kindByCode: Record<string, ConnectorErrorKind> = {
  '601': 'auth',
  '602': 'auth',
  '603': 'forbidden',
  '606': 'rate_limited',
  '615': 'rate_limited',
  '607': 'quota_exhausted',
  '500': 'transient',
  '502': 'transient',
  '604': 'transient',
  '608': 'transient',
  '611': 'transient',
  // reference §5.2/§5.4: "transient unreachable subscription; retry"
  '614': 'transient',
  '713': 'transient',
};

export function marketoErrorKind(code: string): ConnectorErrorKind {
  return kindByCode[code] ?? 'permanent';
}

export class MarketoApiError extends ConnectorError {
  readonly system = 'marketo' as const;
  /** Marketo's own message for `code` */
  readonly marketoMessage: string;
  /** the REST endpoint label the failing call went to */
  readonly endpoint: string;

  constructor(
    kind: ConnectorErrorKind,
    details: { code?: string; message: string; endpoint: string; httpStatus?: number; retryAfterMs?: number; cause?: unknown },
  ) {
    super(kind, `Marketo ${details.endpoint}: ${details.code === undefined ? '' : `${details.code} `}${details.message}`, {
      ...(details.code === undefined ? {} : { code: details.code }),
      ...(details.httpStatus === undefined ? {} : { httpStatus: details.httpStatus }),
      ...(details.retryAfterMs === undefined ? {} : { retryAfterMs: details.retryAfterMs }),
      ...(details.cause === undefined ? {} : { cause: details.cause }),
    });
    this.marketoMessage = details.message;
    this.endpoint = details.endpoint;
  }

  static fromCode(code: string, message: string, endpoint: string, httpStatus?: number): MarketoApiError {
    return new MarketoApiError(marketoErrorKind(code), { code, message, endpoint, ...(httpStatus === undefined ? {} : { httpStatus }) });
  }
}

export function isMarketoApiError(error: unknown): error is MarketoApiError {
  return error instanceof MarketoApiError;
}
