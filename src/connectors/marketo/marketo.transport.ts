import type { Logger } from 'pino';
import type { z } from 'zod';
import { withTimeout } from '../../lifecycle.ts';
import { isTimeout } from '../errors.ts';
import { NothingToSend } from '../ride-along.ts';
import { parseRetryAfter, retrying, type RetriesTaken } from '../../retry.ts';
import { MarketoApiError } from './marketo.errors.ts';
import type { MarketoPacer } from './marketo.pacing.ts';
import { marketoRetryVerdict, type MarketoRetrySettings, type MarketoVerdict } from './marketo.retry.ts';
import { envelopeSchema, tokenResponseSchema, type MarketoEnvelope } from './marketo.schemas.ts';

// One Marketo REST call as the endpoints see it: the access token (identity's client credentials,
// shared by concurrent callers and renewed before it expires), the HTTP exchange and Marketo's
// envelope turned into a typed MarketoApiError, admission by the pacer, and the retries of
// marketo.retry.ts. Counts what it sends and receives for the client's stats.

export type CallSpec = {
  endpoint: string;
  method: 'GET' | 'POST';
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  /** records sent (writes); records received are counted from the response */
  recordsSent?: number;
  /** false: a timeout or a 5xx may have applied the write, so it is not replayed blindly */
  idempotent?: boolean;
};

/**
 * A call whose request is built when the limiter admits it (see ride-along.ts). With `everyAttempt`
 * it is built again before each resend (fenced writes: a record whose fence no longer holds leaves
 * the call); `build` answering null means nothing is left to send.
 */
export type DeferredCallSpec = Pick<CallSpec, 'endpoint' | 'method'> & { build: () => CallSpec | null | Promise<CallSpec | null>; everyAttempt?: boolean };

export type MarketoEndpointStats = { calls: number; records: number; errors: Record<string, number> };

export type MarketoClientStats = MarketoEndpointStats & {
  retries: number;
  tokenRequests: number;
  /** calls the deployment made today (Marketo day), as this replica's budget last heard */
  dailyCalls: number;
  byEndpoint: Record<string, MarketoEndpointStats>;
};

export type MarketoCall = (spec: CallSpec | DeferredCallSpec) => Promise<MarketoEnvelope>;

export type MarketoTransportOptions = {
  /** instance host without /rest */
  baseUrl: string;
  clientId: string;
  clientSecret: string;
  fetch: typeof fetch;
  now: () => number;
  logger: Logger | undefined;
  /** per HTTP call; default per endpoint */
  timeoutMs: number | undefined;
  /** renew the token this long before it expires */
  tokenRefreshSkewMs: number;
  retry: MarketoRetrySettings;
  pacer: MarketoPacer;
};

// the instance refuses URIs over 8 KB (414); switch to POST ?_method=GET well before that
const MAX_GET_URL = 7 * 1024;

// Marketo's documented timeouts per endpoint; others 30 s
const endpointTimeoutMs: Record<string, number> = {
  'leads.sync': 90_000,
  'leads.query': 60_000,
  'activities.pagingtoken': 300_000,
};

/** The result array of an envelope, each item checked against `schema`. */
export function parseResult<S extends z.ZodType>(schema: S, envelope: MarketoEnvelope, endpoint: string): z.infer<S>[] {
  const parsed = schema.array().safeParse(envelope.result ?? []);
  if (!parsed.success) {
    throw new MarketoApiError('permanent', { message: `unexpected result shape: ${parsed.error.message}`, endpoint, httpStatus: 200 });
  }
  return parsed.data;
}

export function createMarketoTransport(options: MarketoTransportOptions) {
  const { logger } = options;
  const totals: MarketoClientStats = { calls: 0, records: 0, errors: {}, retries: 0, tokenRequests: 0, dailyCalls: 0, byEndpoint: {} };
  const endpointStats = (endpoint: string): MarketoEndpointStats => (totals.byEndpoint[endpoint] ??= { calls: 0, records: 0, errors: {} });
  const stats = {
    sent(endpoint: string, records: number | undefined): void {
      totals.calls++;
      endpointStats(endpoint).calls++;
      if (records) stats.records(endpoint, records);
    },
    records(endpoint: string, count: number): void {
      totals.records += count;
      endpointStats(endpoint).records += count;
    },
    error(endpoint: string, code: string): void {
      totals.errors[code] = (totals.errors[code] ?? 0) + 1;
      const byEndpoint = endpointStats(endpoint);
      byEndpoint.errors[code] = (byEndpoint.errors[code] ?? 0) + 1;
    },
  };
  const tokens = createMarketoTokens(options, () => totals.tokenRequests++);
  const exchange = (spec: CallSpec, timeoutMs: number) => sendOnce(options, tokens, stats, spec, timeoutMs);

  function effects(verdict: MarketoVerdict, error: unknown, endpoint: string, taken: RetriesTaken): void {
    if (!verdict.retry || !(error instanceof MarketoApiError)) return;
    totals.retries++;
    const retry = { endpoint, code: error.code, delayMs: Math.round(verdict.waitMs), retry: (taken[verdict.as] ?? 0) + 1 };
    if (verdict.renewToken) {
      tokens.forget();
      logger?.info({ endpoint, code: error.code }, 'marketo token rejected; renewing and replaying');
    } else if (verdict.as === 'rateLimit') {
      if (verdict.pauseEveryone) options.pacer.pauseEveryone(verdict.waitMs);
      logger?.warn(retry, 'marketo rate limit; backing off');
    } else logger?.warn({ endpoint, code: error.code, httpStatus: error.httpStatus, delayMs: retry.delayMs, retry: retry.retry }, 'marketo transient error; retrying');
  }

  const call: MarketoCall = (spec) => {
    // a deferred request is built at its first admission; retries resend that same request, unless
    // it is to be built anew before each attempt (fenced writes)
    let bound: CallSpec | undefined = 'build' in spec ? undefined : spec;
    const request = async (): Promise<CallSpec> => {
      if (bound && !('build' in spec && spec.everyAttempt)) return bound;
      const built = await (spec as DeferredCallSpec).build();
      if (!built) throw new NothingToSend();
      return (bound = built);
    };
    const timeoutMs = options.timeoutMs ?? endpointTimeoutMs[spec.endpoint] ?? 30_000;
    return retrying(() => options.pacer.admit(spec.endpoint, spec.method, async () => exchange(await request(), timeoutMs)), {
      onError: (error, taken) => marketoRetryVerdict(error, taken, options.retry, { idempotent: bound?.idempotent !== false }),
      effects: (verdict, outcome, taken) => 'error' in outcome && effects(verdict, outcome.error, spec.endpoint, taken),
    });
  };

  return {
    call,
    /** the API-only user the token belongs to (identity's `scope`): activities it caused are our echoes */
    apiUser: (): string | undefined => tokens.apiUser(),
    stats: (): MarketoClientStats => structuredClone(totals),
  };
}

type Tokens = ReturnType<typeof createMarketoTokens>;
type CallStats = { sent(endpoint: string, records: number | undefined): void; records(endpoint: string, count: number): void; error(endpoint: string, code: string): void };

/** The access token: one identity request for all concurrent callers, renewed before it expires. */
function createMarketoTokens(options: MarketoTransportOptions, counted: () => void) {
  let token: { value: string; refreshAt: number } | undefined;
  let apiUser: string | undefined;
  let tokenRequest: Promise<string> | undefined;
  const skewMs = options.tokenRefreshSkewMs;
  const identity = (message: string, extra: { httpStatus?: number; cause?: unknown } = {}) => ({ message, endpoint: 'identity', ...extra });

  function requestToken(): Promise<string> {
    return withTimeout(options.timeoutMs ?? 30_000, (signal) => requestTokenWithin(signal));
  }

  async function requestTokenWithin(signal: AbortSignal): Promise<string> {
    counted();
    const url = new URL(`${options.baseUrl}/identity/oauth/token`);
    url.searchParams.set('grant_type', 'client_credentials');
    url.searchParams.set('client_id', options.clientId);
    url.searchParams.set('client_secret', options.clientSecret);
    let response: Response;
    try {
      response = await options.fetch(url, { method: 'GET', headers: { Accept: 'application/json' }, signal });
    } catch (cause) {
      throw new MarketoApiError('transient', identity('identity request failed', { cause }));
    }
    const text = await response.text();
    if (response.status >= 500) throw new MarketoApiError('transient', identity(`identity answered HTTP ${response.status}`, { httpStatus: response.status }));
    const json = parseJson(text);
    const parsed = tokenResponseSchema.safeParse(json);
    if (response.status !== 200 || !parsed.success) {
      const description = typeof json === 'object' && json !== null && 'error_description' in json ? String(json.error_description) : `HTTP ${response.status}`;
      throw new MarketoApiError('auth', identity(`token request refused: ${description}`, { httpStatus: response.status }));
    }
    const lifetimeMs = parsed.data.expires_in * 1000;
    // identity returns the same token with its remaining life: near expiry, renew at half-life steps
    const refreshIn = lifetimeMs > 2 * skewMs ? lifetimeMs - skewMs : lifetimeMs / 2;
    token = { value: parsed.data.access_token, refreshAt: options.now() + refreshIn };
    apiUser = parsed.data.scope ?? apiUser;
    return token.value;
  }

  return {
    get(): Promise<string> {
      if (token && options.now() < token.refreshAt) return Promise.resolve(token.value);
      // concurrent callers share one identity request
      tokenRequest ??= requestToken().finally(() => {
        tokenRequest = undefined;
      });
      return tokenRequest;
    },
    /** forgets the token, or only `value` if that is still the one held */
    forget(value?: string): void {
      if (value === undefined || token?.value === value) token = undefined;
    },
    apiUser: (): string | undefined => apiUser,
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function buildUrl(baseUrl: string, path: string, query: Record<string, string | undefined> = {}): URL {
  const url = new URL(`${baseUrl}${path}`);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
  return url;
}

/** The request as sent: a GET too long for a URL goes as POST ?_method=GET with a form body. */
function httpRequest(baseUrl: string, spec: CallSpec, accessToken: string): { url: URL; init: RequestInit & { headers: Record<string, string> } } {
  let url = buildUrl(baseUrl, spec.path, spec.query);
  const headers: Record<string, string> = { Authorization: `Bearer ${accessToken}`, Accept: 'application/json' };
  if (spec.method === 'GET' && url.href.length > MAX_GET_URL) {
    const body = url.searchParams.toString();
    url = buildUrl(baseUrl, spec.path, { _method: 'GET' });
    return { url, init: { method: 'POST', headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' }, body } };
  }
  if (spec.body === undefined) return { url, init: { method: spec.method, headers } };
  return { url, init: { method: spec.method, headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(spec.body) } };
}

/** One HTTP exchange: Marketo's envelope, or a MarketoApiError of the kind its code says. */
async function sendOnce(options: MarketoTransportOptions, tokens: Tokens, stats: CallStats, spec: CallSpec, timeoutMs: number): Promise<MarketoEnvelope> {
  const accessToken = await tokens.get();
  return withTimeout(timeoutMs, (signal) => sendOnceWithin(options, tokens, stats, spec, { timeoutMs, accessToken, signal }));
}

async function sendOnceWithin(
  options: MarketoTransportOptions,
  tokens: Tokens,
  stats: CallStats,
  spec: CallSpec,
  { timeoutMs, accessToken, signal }: { timeoutMs: number; accessToken: string; signal: AbortSignal },
): Promise<MarketoEnvelope> {
  const { url, init } = httpRequest(options.baseUrl, spec, accessToken);
  stats.sent(spec.endpoint, spec.recordsSent);
  let response: Response;
  let text: string;
  try {
    response = await options.fetch(url, { ...init, signal });
    text = await response.text();
  } catch (cause) {
    const timedOut = isTimeout(cause);
    stats.error(spec.endpoint, timedOut ? 'timeout' : 'network');
    throw new MarketoApiError('transient', { message: timedOut ? `no response within ${timeoutMs} ms` : 'network error', endpoint: spec.endpoint, cause });
  }
  if (response.status !== 200) {
    stats.error(spec.endpoint, `http_${response.status}`);
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
    const details = { message: `HTTP ${response.status}`, endpoint: spec.endpoint, httpStatus: response.status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    if (response.status === 401) {
      tokens.forget();
      throw new MarketoApiError('auth', details);
    }
    throw new MarketoApiError(response.status >= 500 ? 'transient' : 'permanent', details);
  }
  return envelopeOf(text, spec.endpoint, accessToken, tokens, stats);
}

function envelopeOf(text: string, endpoint: string, accessToken: string, tokens: Tokens, stats: CallStats): MarketoEnvelope {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    stats.error(endpoint, 'invalid_json');
    throw new MarketoApiError('transient', { message: 'response is not JSON', endpoint, httpStatus: 200, cause });
  }
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) {
    stats.error(endpoint, 'invalid_envelope');
    throw new MarketoApiError('permanent', { message: `unexpected response shape: ${envelope.error.message}`, endpoint, httpStatus: 200 });
  }
  if (!envelope.data.success) {
    const first = envelope.data.errors?.[0] ?? { code: 'unknown', message: 'success:false without errors' };
    stats.error(endpoint, first.code);
    if (first.code === '601' || first.code === '602') tokens.forget(accessToken);
    throw MarketoApiError.fromCode(first.code, first.message, endpoint, 200);
  }
  stats.records(endpoint, envelope.data.result?.length ?? 0);
  return envelope.data;
}
