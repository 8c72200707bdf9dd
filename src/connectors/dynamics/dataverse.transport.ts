import type { z } from 'zod';
import { isTimeout } from '../errors.ts';
import { NothingToSend } from '../ride-along.ts';
import { parseRetryAfter, retrying } from '../../retry.ts';
import { withTimeout } from '../../lifecycle.ts';
import { DataverseApiError, DataverseAuthError, DataversePermanentError, DataverseTransientError, dataverseErrorFromResponse } from './dataverse.errors.ts';
import type { createDataversePacer } from './dataverse.pacing.ts';
import { dataverseRetryVerdict, type DataverseRetrySettings, type DataverseVerdict } from './dataverse.retry.ts';
import { errorBodySchema, tokenErrorSchema, tokenResponseSchema } from './dataverse.schemas.ts';

// One Web API call as the endpoints see it: the Entra ID token (client credentials, shared by
// concurrent callers, renewed five minutes before it expires), the HTTP exchange with its answer's
// status turned into a typed DataverseApiError, admission by the pacer (which each answer's time
// and headers feed back), and the retries of dataverse.retry.ts. Counts calls, errors and retries
// per endpoint for the client's stats.

export type CallOptions = {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** absolute URL or path relative to the Web API root */
  url: string;
  endpoint: string;
  /** JSON (serialised here) or a ready text body (a $batch) */
  body?: unknown;
  headers?: Record<string, string>;
};

/**
 * A call built when the budget admits it; with `everyAttempt`, built again before each resend (a
 * $batch of fenced writes: an operation whose work lost its lease leaves it). `build` answering
 * null means nothing is left to send.
 */
export type DeferredCall = {
  endpoint: string;
  build: () => CallOptions | null | Promise<CallOptions | null>;
  everyAttempt?: boolean;
  /** each answer, while the request still holds its place in the budget */
  answered?: (raw: RawResponse) => void;
};

export type RawResponse = { status: number; headers: Headers; json: unknown; text?: string; elapsedMs?: number };

export type DataverseEndpointStats = { calls: number; errors: number; retries: number };

export type DataverseCall = (spec: CallOptions | DeferredCall) => Promise<RawResponse>;

export type DataverseTransportOptions = {
  /** environment URL without a trailing slash */
  baseUrl: string;
  /** the Web API root, ending in / */
  apiUrl: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  fetch: typeof fetch;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  timeoutMs: number;
  retry: DataverseRetrySettings;
  pacer: ReturnType<typeof createDataversePacer>;
  /** a 429 for execution time: the next $batch is to carry fewer operations */
  shrinkBatch: () => void;
};

// msal's DEFAULT_TOKEN_RENEWAL_OFFSET_SEC: never send a token that may expire in flight
const TOKEN_RENEWAL_OFFSET_MS = 300_000;

/** A JSON answer, checked against `schema`: anything else is a bug on one side, not worth a retry. */
export function parse<T extends z.ZodType>(schema: T, raw: RawResponse, endpoint: string): z.infer<T> {
  const parsed = schema.safeParse(raw.json);
  if (!parsed.success) {
    throw new DataversePermanentError(`Unexpected Dataverse response for ${endpoint}: ${parsed.error.message}`, { httpStatus: raw.status, endpoint });
  }
  return parsed.data;
}

export function createDataverseTransport(options: DataverseTransportOptions) {
  const { now, pacer } = options;
  const endpointStats = new Map<string, DataverseEndpointStats>();
  function count(endpoint: string, field: keyof DataverseEndpointStats): void {
    let s = endpointStats.get(endpoint);
    if (!s) {
      s = { calls: 0, errors: 0, retries: 0 };
      endpointStats.set(endpoint, s);
    }
    s[field] += 1;
  }
  const tokens = createDataverseTokens(options, count);

  /** One request, admitted by the budget; its time and the server's headers feed the budget back. */
  function paced(spec: CallOptions | DeferredCall, bound: { call?: CallOptions; token?: string }): Promise<RawResponse> {
    return pacer.schedule(async () => {
      if (!('build' in spec)) bound.call = spec;
      else if (!bound.call || spec.everyAttempt) {
        const built = await spec.build();
        if (!built) throw new NothingToSend();
        bound.call = built;
      }
      const request = bound.call;
      bound.token = await tokens.get();
      count(request.endpoint, 'calls');
      const started = now();
      const raw = await sendOnce(options, request, bound.token);
      raw.elapsedMs = Math.max(0, now() - started);
      pacer.observe(raw.headers, raw.elapsedMs);
      if ('build' in spec) spec.answered?.(raw);
      if (raw.status !== 429) pacer.succeeded();
      return raw;
    });
  }

  function effects(verdict: DataverseVerdict, error: unknown, endpoint: string, bound: { token?: string }): void {
    if (error instanceof NothingToSend) return;
    count(endpoint, 'errors');
    if (verdict.renewToken) tokens.forget(bound.token);
    if (verdict.throttleMs !== undefined) pacer.throttled(verdict.throttleMs, error instanceof DataverseApiError ? error.code : undefined);
    if (verdict.shrinkBatch) options.shrinkBatch();
    if (verdict.retry) count(endpoint, 'retries');
  }

  const call: DataverseCall = (spec) => {
    const bound: { call?: CallOptions; token?: string } = {};
    return retrying(
      async () => {
        const raw = await paced(spec, bound);
        // a $batch answers 400 with an answer per operation when continue-on-error was ignored
        if (raw.status < 400 || (raw.status === 400 && raw.text !== undefined)) return raw;
        throw errorFrom(bound.call?.endpoint ?? spec.endpoint, raw, now());
      },
      {
        onError: (error, taken) => dataverseRetryVerdict(error, taken, options.retry),
        effects: (verdict, outcome) => 'error' in outcome && effects(verdict, outcome.error, spec.endpoint, bound),
        sleep: options.sleep,
      },
    );
  };

  return {
    call,
    stats() {
      const endpoints: Record<string, DataverseEndpointStats> = {};
      let totalCalls = 0;
      let totalErrors = 0;
      for (const [name, s] of endpointStats) {
        endpoints[name] = { ...s };
        totalCalls += s.calls;
        totalErrors += s.errors;
      }
      return { endpoints, totalCalls, totalErrors, tokenRequests: tokens.requests() };
    },
  };
}

/** The Entra ID token: one request for all concurrent callers, renewed before it may expire in flight. */
function createDataverseTokens(options: DataverseTransportOptions, count: (endpoint: string, field: keyof DataverseEndpointStats) => void) {
  let cachedToken: { value: string; expiresAt: number } | undefined;
  let tokenInFlight: Promise<string> | undefined;
  let tokenRequests = 0;
  const endpoint = 'POST token';

  function requestToken(): Promise<string> {
    return withTimeout(options.timeoutMs, (signal) => requestTokenWithin(signal));
  }

  async function requestTokenWithin(signal: AbortSignal): Promise<string> {
    tokenRequests += 1;
    count(endpoint, 'calls');
    const form = new URLSearchParams({ client_id: options.clientId, client_secret: options.clientSecret, scope: `${options.baseUrl}/.default`, grant_type: 'client_credentials' });
    let response: Response;
    try {
      response = await options.fetch(options.tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: form.toString(),
        signal,
      });
    } catch (cause) {
      count(endpoint, 'errors');
      throw new DataverseTransientError('Token endpoint unreachable', { cause, endpoint });
    }
    const json = await readJson(response);
    if (!response.ok) {
      count(endpoint, 'errors');
      const parsed = tokenErrorSchema.safeParse(json);
      const detail = parsed.success ? (parsed.data.error_description ?? parsed.data.error) : `HTTP ${response.status}`;
      const code = parsed.success ? parsed.data.error : undefined;
      const errOptions = { httpStatus: response.status, endpoint, ...(code ? { code } : {}) };
      if (response.status >= 500 || response.status === 429) throw new DataverseTransientError(detail, errOptions);
      throw new DataverseAuthError(`Token request refused: ${detail}`, errOptions);
    }
    const token = tokenResponseSchema.safeParse(json);
    if (!token.success) {
      count(endpoint, 'errors');
      throw new DataverseAuthError(`Token response not understood: ${token.error.message}`, { endpoint });
    }
    cachedToken = { value: token.data.access_token, expiresAt: options.now() + token.data.expires_in * 1000 };
    return token.data.access_token;
  }

  return {
    get(): Promise<string> {
      if (cachedToken && options.now() < cachedToken.expiresAt - TOKEN_RENEWAL_OFFSET_MS) return Promise.resolve(cachedToken.value);
      // concurrent callers share one token request
      tokenInFlight ??= requestToken().finally(() => {
        tokenInFlight = undefined;
      });
      return tokenInFlight;
    },
    /** forgets the token if it is still `value` (a concurrent caller may have renewed it already) */
    forget(value: string | undefined): void {
      if (cachedToken?.value === value) cachedToken = undefined;
    },
    requests: () => tokenRequests,
  };
}

function resolveUrl(apiUrl: string, url: string): string {
  const absolute = /^https?:\/\//i.test(url) ? url : apiUrl + url.replace(/^\/+/, '');
  // nextLink/deltaLink come from the server; never send our token to another origin
  if (!absolute.startsWith(apiUrl)) {
    throw new DataversePermanentError(`Refusing to call ${absolute}: not under ${apiUrl}`);
  }
  return absolute;
}

function sendOnce(options: DataverseTransportOptions, call: CallOptions, token: string): Promise<RawResponse> {
  return withTimeout(options.timeoutMs, (signal) => sendOnceWithin(options, call, token, signal));
}

async function sendOnceWithin(options: DataverseTransportOptions, call: CallOptions, token: string, signal: AbortSignal): Promise<RawResponse> {
  const headers: Record<string, string> = {
    Authorization: `Bearer ${token}`,
    Accept: 'application/json',
    'OData-MaxVersion': '4.0',
    'OData-Version': '4.0',
    ...call.headers,
  };
  const init: RequestInit = { method: call.method, headers, signal };
  if (typeof call.body === 'string') init.body = call.body;
  else if (call.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(call.body);
  }
  let response: Response;
  try {
    response = await options.fetch(resolveUrl(options.apiUrl, call.url), init);
  } catch (cause) {
    if (cause instanceof DataverseApiError) throw cause;
    const timedOut = isTimeout(cause);
    throw new DataverseTransientError(timedOut ? `Timed out after ${options.timeoutMs} ms` : 'Network error', { cause, endpoint: call.endpoint });
  }
  if (/^multipart\/mixed/i.test(response.headers.get('content-type') ?? '')) {
    return { status: response.status, headers: response.headers, json: undefined, text: await response.text() };
  }
  const json = response.status === 204 || response.status === 304 ? undefined : await readJson(response);
  return { status: response.status, headers: response.headers, json };
}

function errorFrom(endpoint: string, raw: RawResponse, nowMs: number): DataverseApiError {
  const body = errorBodySchema.safeParse(raw.json);
  const code = body.success ? (body.data.error.code ?? '') : '';
  const message = body.success ? (body.data.error.message ?? '') : '';
  const retryAfterMs = parseRetryAfter(raw.headers.get('retry-after'), nowMs);
  return dataverseErrorFromResponse(raw.status, code, message, { endpoint, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { unparsed: text.slice(0, 500) };
  }
}
