import type { Logger } from 'pino';
import type { z } from 'zod';
import { MarketoApiError } from './marketo.errors.ts';
import type { WriteFence } from '../../sync/ports.ts';
import { createRideAlong, type FillPolicy } from '../ride-along.ts';
import { BudgetExhausted } from '../budget/limiter.ts';
import { marketoBudgetSpec, nextMarketoMidnight, perCallPools, soloBudget, type VendorBudget } from '../budget/vendors.ts';
import {
  activitySchema,
  deleteResultSchema,
  describe2Schema,
  describeFieldSchema,
  envelopeSchema,
  leadSchema,
  syncResultSchema,
  tokenResponseSchema,
  usageSchema,
  type MarketoActivity,
  type MarketoDailyUsage,
  type MarketoEnvelope,
  type MarketoLead,
} from './marketo.schemas.ts';

export type MarketoClientOptions = {
  /** instance host, e.g. https://123-ABC-456.mktorest.com (REST under /rest, token under /identity) */
  baseUrl: string;
  clientId: string;
  clientSecret: string;
  fetch?: typeof fetch;
  /** epoch ms; token expiry and the daily-quota day */
  now?: () => number;
  logger?: Logger;
  limits?: {
    /** calls started per window; default 50, half the instance's 100 because all integrations share it */
    callsPer20s?: number;
    /** the rate window in ms; default 20000 (Marketo's) — shorter only in tests */
    windowMs?: number;
    /** calls in flight; default 5 (Adobe's advice per integration; the instance allows 10) */
    maxConcurrent?: number;
    /** calls per Marketo day (00:00 US Central); default unlimited (the server's 607 still applies) */
    dailyQuota?: number;
  };
  retry?: {
    /** retries after 604/608/611/614/713, HTTP 5xx, network errors and timeouts; default 4 */
    transientRetries?: number;
    /** retries after 606/615; default 12 (about three minutes of backoff, enough to ride out a storm) */
    rateLimitRetries?: number;
    /** first transient backoff in ms, doubled per retry, jittered; default 500 */
    baseDelayMs?: number;
    /** first 606/615 backoff in ms; default 2000 (Adobe: back off at least a few seconds, up to 20 s) */
    rateLimitDelayMs?: number;
    /** cap of one backoff; default 20000 (a full rate window) */
    maxDelayMs?: number;
  };
  /** per HTTP call; default per endpoint as Marketo documents (Sync Leads 90 s, queries 60 s, paging token 300 s, others 30 s) */
  timeoutMs?: number;
  /** renew the token this long before it expires; default 60000 */
  tokenRefreshSkewMs?: number;
  /**
   * this replica's slice of the deployment's Marketo budget (src/connectors/budget/; the service
   * passes its coordinator's). Without it the client holds `limits` whole, alone.
   */
  budget?: VendorBudget;
  /**
   * how long a part-full read or write may wait for a burst or the call feeding it to fill it (see
   * FillPolicy; creates wait twice as long); default 1000 ms, the rate measured over 1000 ms;
   * `false` sends every call as soon as it is dispatched
   */
  fill?: { maxHoldMs: number; rateWindowMs: number } | false;
};

export type MarketoSyncAction = 'createOrUpdate' | 'updateOnly' | 'createOnly';
export type MarketoSyncResult = z.infer<typeof syncResultSchema>;
export type MarketoDeleteResult = z.infer<typeof deleteResultSchema>;

export type MarketoFieldDescription = {
  /** REST API name */
  name: string;
  displayName: string;
  dataType: string;
  length?: number;
  readOnly: boolean;
  updateable: boolean;
  /** owned by a native CRM sync (describe2 only) */
  crmManaged: boolean;
  /** usable as filterType / lookupField (describe2 only) */
  searchable: boolean;
  /** webhook response mappings address fields by it (describe only) */
  soapName?: string;
};

export type MarketoActivityPage = {
  /** always present: persist it after handling the page, resume from it next time */
  nextPageToken: string;
  /** true: call again now, even when this page held few or no items */
  moreResult: boolean;
  items: MarketoActivity[];
};

export type MarketoEndpointStats = { calls: number; records: number; errors: Record<string, number> };

export type MarketoClientStats = MarketoEndpointStats & {
  retries: number;
  tokenRequests: number;
  /** calls the deployment made today (Marketo day), as this replica's budget last heard */
  dailyCalls: number;
  byEndpoint: Record<string, MarketoEndpointStats>;
};

export type MarketoClient = ReturnType<typeof createMarketoClient>;

/** records one Marketo call may carry (reads and writes) */
export const MAX_BATCH = 300;
// A call takes whole requests, so a read request rides in pieces this small: a call then fills to
// within a piece of its 300 (a piece's answer stands alone, unlike a write's results by position).
// Whole batches of ~30 left reads ~20 short, two extra reads in a burst of 10,000.
const READ_PIECE = 10;
const DAY_MS = 86_400_000;
// the instance refuses URIs over 8 KB (414); switch to POST ?_method=GET well before that
const MAX_GET_URL = 7 * 1024;

const endpointTimeoutMs: Record<string, number> = {
  'leads.sync': 90_000,
  'leads.query': 60_000,
  'activities.pagingtoken': 300_000,
};

type CallSpec = {
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
type DeferredCallSpec = Pick<CallSpec, 'endpoint' | 'method'> & { build: () => CallSpec | null | Promise<CallSpec | null>; everyAttempt?: boolean };

/** A deferred call that had nothing left to send when admitted: every record's fence had failed. */
class NothingToSend extends Error {}

// Reads queue behind writes: a write finishes a change whose read was already spent, a read
// starts a new one.
const WRITE_PRIORITY = 3;
const READ_PRIORITY = 5;

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseRetryAfter(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Activity dates come as `...Z` or `...+0000`; both are instants. */
export function parseMarketoDate(value: string): Date {
  return new Date(value.replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
}

/**
 * The token bucket of one member holding the whole share: `bucket` calls at once, then one every
 * `dripMs`. Any 20 s then holds at most the share (docs/budgets.md): the bucket is part of it.
 */
export function marketoDripPlan(callsPerWindow: number, windowMs: number): { bucket: number; dripMs: number } {
  const spec = marketoBudgetSpec('plan', { callsPerWindow, windowMs, maxConcurrent: 1 });
  const held = soloBudget(spec, perCallPools.marketo).limiter.slice().holdings['calls'] as { burst: number; rate: number };
  const pool = spec.pools['calls'] as { windowMs: number; jitterMs: number };
  return { bucket: held.burst, dripMs: Math.ceil((pool.windowMs + pool.jitterMs) / held.rate) };
}

export function createMarketoClient(options: MarketoClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '').replace(/\/rest$/, '');
  const fetchImpl = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const logger = options.logger;
  const callsPerWindow = options.limits?.callsPer20s ?? 50;
  const windowMs = options.limits?.windowMs ?? 20_000;
  const dailyQuota = options.limits?.dailyQuota;
  const retry = {
    transientRetries: options.retry?.transientRetries ?? 4,
    rateLimitRetries: options.retry?.rateLimitRetries ?? 12,
    baseDelayMs: options.retry?.baseDelayMs ?? 500,
    rateLimitDelayMs: options.retry?.rateLimitDelayMs ?? 2000,
    maxDelayMs: options.retry?.maxDelayMs ?? 20_000,
  };
  const skewMs = options.tokenRefreshSkewMs ?? 60_000;

  // One budget for every call this client makes: the instance's limits are shared anyway. A token
  // bucket rather than a per-window refill: a refill lets a burst spend the whole window's budget in
  // a second and then stalls everything for the rest of it, while a steady drip keeps calls flowing
  // and lets callers batch more per call under load. The bucket is part of the share, so no 20 s
  // holds more than the share (src/connectors/budget/).
  const budget =
    options.budget ??
    soloBudget(
      marketoBudgetSpec(`marketo:${new URL(baseUrl).host}`, {
        callsPerWindow,
        windowMs,
        maxConcurrent: options.limits?.maxConcurrent ?? 5,
        dailyQuota,
      }),
      perCallPools.marketo,
    );
  const limiter = budget.limiter;
  // A read is admitted only while the bucket holds one more call than it spends: a sync that has
  // read a record then writes it at once instead of waiting for the next drip (under load, a
  // read-then-write cycle takes two drips back to back rather than one drip apart). Reads alone
  // lose no throughput by it; a bucket of one admits reads with one token.
  const READ_NEED = 2;

  let token: { value: string; refreshAt: number } | undefined;
  // the API-only user the token belongs to (identity's `scope`): activities it caused are our echoes
  let apiUser: string | undefined;
  let tokenRequest: Promise<string> | undefined;
  // a 606 slows every caller, not only the one that saw it
  let pausedUntil = 0;
  let quotaBlockedUntil = 0;
  const totals: MarketoClientStats = { calls: 0, records: 0, errors: {}, retries: 0, tokenRequests: 0, dailyCalls: 0, byEndpoint: {} };

  function endpointStats(endpoint: string): MarketoEndpointStats {
    return (totals.byEndpoint[endpoint] ??= { calls: 0, records: 0, errors: {} });
  }

  function recordError(endpoint: string, code: string): void {
    totals.errors[code] = (totals.errors[code] ?? 0) + 1;
    const stats = endpointStats(endpoint);
    stats.errors[code] = (stats.errors[code] ?? 0) + 1;
  }

  function recordRecords(endpoint: string, count: number): void {
    totals.records += count;
    endpointStats(endpoint).records += count;
  }

  async function requestToken(): Promise<string> {
    totals.tokenRequests++;
    const url = new URL(`${baseUrl}/identity/oauth/token`);
    url.searchParams.set('grant_type', 'client_credentials');
    url.searchParams.set('client_id', options.clientId);
    url.searchParams.set('client_secret', options.clientSecret);
    let response: Response;
    try {
      response = await fetchImpl(url, { method: 'GET', headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(options.timeoutMs ?? 30_000) });
    } catch (cause) {
      throw new MarketoApiError('transient', { message: 'identity request failed', endpoint: 'identity', cause });
    }
    const text = await response.text();
    if (response.status >= 500) {
      throw new MarketoApiError('transient', { message: `identity answered HTTP ${response.status}`, endpoint: 'identity', httpStatus: response.status });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const parsed = tokenResponseSchema.safeParse(json);
    if (response.status !== 200 || !parsed.success) {
      const description =
        typeof json === 'object' && json !== null && 'error_description' in json ? String(json.error_description) : `HTTP ${response.status}`;
      throw new MarketoApiError('auth', { message: `token request refused: ${description}`, endpoint: 'identity', httpStatus: response.status });
    }
    const lifetimeMs = parsed.data.expires_in * 1000;
    // identity returns the same token with its remaining life: near expiry, renew at half-life steps
    const refreshIn = lifetimeMs > 2 * skewMs ? lifetimeMs - skewMs : lifetimeMs / 2;
    token = { value: parsed.data.access_token, refreshAt: now() + refreshIn };
    apiUser = parsed.data.scope ?? apiUser;
    return token.value;
  }

  function getToken(): Promise<string> {
    if (token && now() < token.refreshAt) return Promise.resolve(token.value);
    // concurrent callers share one identity request
    tokenRequest ??= requestToken().finally(() => {
      tokenRequest = undefined;
    });
    return tokenRequest;
  }

  function buildUrl(path: string, query: Record<string, string | undefined> = {}): URL {
    const url = new URL(`${baseUrl}${path}`);
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
    return url;
  }

  async function attempt(spec: CallSpec, timeoutMs: number): Promise<MarketoEnvelope> {
    const accessToken = await getToken();
    let url = buildUrl(spec.path, spec.query);
    const headers: Record<string, string> = { Authorization: `Bearer ${accessToken}`, Accept: 'application/json' };
    let method: string = spec.method;
    let body: string | undefined;
    if (spec.method === 'GET' && url.href.length > MAX_GET_URL) {
      body = url.searchParams.toString();
      url = buildUrl(spec.path, { _method: 'GET' });
      method = 'POST';
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
    } else if (spec.body !== undefined) {
      body = JSON.stringify(spec.body);
      headers['Content-Type'] = 'application/json';
    }

    totals.calls++;
    endpointStats(spec.endpoint).calls++;
    if (spec.recordsSent) recordRecords(spec.endpoint, spec.recordsSent);

    let response: Response;
    let text: string;
    try {
      response = await fetchImpl(url, { method, headers, ...(body === undefined ? {} : { body }), signal: AbortSignal.timeout(timeoutMs) });
      text = await response.text();
    } catch (cause) {
      const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
      recordError(spec.endpoint, timedOut ? 'timeout' : 'network');
      const error = new MarketoApiError('transient', { message: timedOut ? `no response within ${timeoutMs} ms` : 'network error', endpoint: spec.endpoint, cause });
      throw error;
    }

    if (response.status !== 200) {
      recordError(spec.endpoint, `http_${response.status}`);
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      const details = { message: `HTTP ${response.status}`, endpoint: spec.endpoint, httpStatus: response.status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
      if (response.status === 401) {
        token = undefined;
        throw new MarketoApiError('auth', details);
      }
      throw new MarketoApiError(response.status >= 500 ? 'transient' : 'permanent', details);
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      recordError(spec.endpoint, 'invalid_json');
      throw new MarketoApiError('transient', { message: 'response is not JSON', endpoint: spec.endpoint, httpStatus: 200, cause });
    }
    const envelope = envelopeSchema.safeParse(json);
    if (!envelope.success) {
      recordError(spec.endpoint, 'invalid_envelope');
      throw new MarketoApiError('permanent', { message: `unexpected response shape: ${envelope.error.message}`, endpoint: spec.endpoint, httpStatus: 200 });
    }
    if (!envelope.data.success) {
      const first = envelope.data.errors?.[0] ?? { code: 'unknown', message: 'success:false without errors' };
      recordError(spec.endpoint, first.code);
      if ((first.code === '601' || first.code === '602') && token?.value === accessToken) token = undefined;
      throw MarketoApiError.fromCode(first.code, first.message, spec.endpoint, 200);
    }
    recordRecords(spec.endpoint, envelope.data.result?.length ?? 0);
    return envelope.data;
  }

  function backoff(base: number, retryIndex: number, hintMs: number | undefined): number {
    const exponential = Math.min(retry.maxDelayMs, base * 2 ** retryIndex);
    const jittered = exponential / 2 + Math.random() * (exponential / 2);
    return Math.max(jittered, hintMs ?? 0);
  }

  function admitted(method: CallSpec['method'], request: () => Promise<CallSpec>, timeoutMs: number): Promise<MarketoEnvelope> {
    const read = method === 'GET';
    return limiter.schedule({ priority: read ? READ_PRIORITY : WRITE_PRIORITY, need: read ? READ_NEED : 1 }, async () => attempt(await request(), timeoutMs));
  }

  async function call(spec: CallSpec | DeferredCallSpec): Promise<MarketoEnvelope> {
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
    let transientRetries = 0;
    let rateLimitRetries = 0;
    let renewed = false;
    for (;;) {
      const at = now();
      if (at < quotaBlockedUntil) {
        throw new MarketoApiError('quota_exhausted', { code: '607', message: 'Daily quota reached (until the next reset)', endpoint: spec.endpoint });
      }
      if (pausedUntil > at) await sleep(pausedUntil - at);
      try {
        return await admitted(spec.method, request, timeoutMs);
      } catch (error) {
        if (error instanceof BudgetExhausted) {
          throw new MarketoApiError('quota_exhausted', { code: '607', message: `the deployment's daily budget of ${dailyQuota ?? 'unlimited'} calls is used`, endpoint: spec.endpoint });
        }
        if (!(error instanceof MarketoApiError)) throw error;
        if (error.kind === 'quota_exhausted') {
          quotaBlockedUntil = nextMarketoMidnight(now());
          throw error;
        }
        if (error.kind === 'auth' && error.endpoint !== 'identity' && !renewed) {
          // token invalid/expired/revoked: renew once and replay the same request
          renewed = true;
          token = undefined;
          totals.retries++;
          logger?.info({ endpoint: spec.endpoint, code: error.code }, 'marketo token rejected; renewing and replaying');
          continue;
        }
        if (error.kind === 'rate_limited' && rateLimitRetries < retry.rateLimitRetries) {
          const delay = backoff(retry.rateLimitDelayMs, rateLimitRetries++, error.retryAfterMs);
          if (error.code === '606') pausedUntil = Math.max(pausedUntil, now() + delay);
          totals.retries++;
          logger?.warn({ endpoint: spec.endpoint, code: error.code, delayMs: Math.round(delay), retry: rateLimitRetries }, 'marketo rate limit; backing off');
          await sleep(delay);
          continue;
        }
        // A write whose first try may have landed (a timeout, a dropped connection, a 5xx, or a 604,
        // 611 or 713 that Marketo gives for work it may have done) is not sent again: the caller
        // re-reads and plans again, so an edit made since that try is merged, not overwritten.
        // Rate limits and token errors are refused before Marketo applies anything (above).
        const replayable = bound?.idempotent !== false;
        if (error.kind === 'transient' && replayable && transientRetries < retry.transientRetries) {
          const delay = backoff(retry.baseDelayMs, transientRetries++, error.retryAfterMs);
          totals.retries++;
          logger?.warn({ endpoint: spec.endpoint, code: error.code, httpStatus: error.httpStatus, delayMs: Math.round(delay), retry: transientRetries }, 'marketo transient error; retrying');
          await sleep(delay);
          continue;
        }
        throw error;
      }
    }
  }

  function parseResult<S extends z.ZodType>(schema: S, envelope: MarketoEnvelope, endpoint: string): z.infer<S>[] {
    const parsed = schema.array().safeParse(envelope.result ?? []);
    if (!parsed.success) {
      throw new MarketoApiError('permanent', { message: `unexpected result shape: ${parsed.error.message}`, endpoint, httpStatus: 200 });
    }
    return parsed.data;
  }

  function leadQuery(filterType: string, values: readonly string[], fields: readonly string[] | undefined, nextPageToken?: string): CallSpec {
    return {
      endpoint: 'leads.query',
      method: 'GET',
      path: '/rest/v1/leads.json',
      query: { filterType, filterValues: values.join(','), fields: fields?.join(','), batchSize: String(MAX_BATCH), nextPageToken },
    };
  }

  async function followLeadPages(first: MarketoEnvelope, again: (nextPageToken: string) => CallSpec, into: Map<number, MarketoLead>): Promise<void> {
    let envelope = first;
    for (;;) {
      for (const lead of parseResult(leadSchema, envelope, 'leads.query')) into.set(lead.id, lead);
      if (!envelope.moreResult || envelope.nextPageToken === undefined) return;
      envelope = await call(again(envelope.nextPageToken));
    }
  }

  async function getLeadsByFilter(filterType: string, values: readonly string[], fields?: readonly string[]): Promise<MarketoLead[]> {
    const leads = new Map<number, MarketoLead>();
    for (const part of chunk([...new Set(values)], MAX_BATCH)) {
      const first = await call(leadQuery(filterType, part, fields));
      await followLeadPages(first, (token) => leadQuery(filterType, part, fields, token), leads);
    }
    return [...leads.values()];
  }

  /**
   * One page of a static list (Get Leads by List Id, reference §14): 300 members at most, in the
   * list's order; Adobe's answer carries `nextPageToken` (no `moreResult`): none, or a page with no
   * members, ends the list.
   */
  async function getListLeads(listId: number, fields: readonly string[], nextPageToken: string | null, batchSize = MAX_BATCH): Promise<{ leads: MarketoLead[]; nextPageToken: string | null }> {
    const endpoint = 'lists.leads';
    const envelope = await call({
      endpoint,
      method: 'GET',
      path: `/rest/v1/lists/${listId}/leads.json`,
      query: { fields: fields.join(','), batchSize: String(Math.min(batchSize, MAX_BATCH)), nextPageToken: nextPageToken ?? undefined },
    });
    const leads = parseResult(leadSchema, envelope, endpoint);
    return { leads, nextPageToken: leads.length > 0 && envelope.nextPageToken ? envelope.nextPageToken : null };
  }

  // Calls are what Marketo's budget counts, not records: a call that a burst or the call feeding it
  // is about to fill waits up to a second for it, so the idle bucket is not spent on a burst's first
  // few records. A steady load that would not fill a call within that second is never held (at 100
  // changes/s a read carries ~80). What feeds what: a read by id becomes a write of the merged
  // values, a look-up's new persons a create, a look-up's matches and the created persons reads by id.
  // Creates wait longer, for the look-up after next: an initial sync's look-up of 300 emails finds
  // ~150 new persons, and the next look-up answers a drip or two later.
  const fillOptions = options.fill === false ? undefined : (options.fill ?? { maxHoldMs: 1000, rateWindowMs: 1000 });
  const fillPolicy = (feeding: (key: string) => number, holdFactor: (key: string) => number = () => 1): FillPolicy | undefined =>
    fillOptions && {
      ...fillOptions,
      maxHoldMs: (key) => fillOptions.maxHoldMs * holdFactor(key),
      feeding,
      now: () => performance.now(),
      after: (ms, fn) => {
        const timer = setTimeout(fn, ms);
        return () => clearTimeout(timer);
      },
    };
  const isCreate = (syncKey: string) => (JSON.parse(syncKey) as SyncBatchKey).action === 'createOnly';

  // Reads by id and writes of concurrent callers share calls, filled when the limiter admits them.
  const idReads = createRideAlong<number, Map<number, MarketoLead>>({
    maxItems: MAX_BATCH,
    fill: fillPolicy((): number => emailReads.carrying() + syncBatches.carrying(isCreate)),
    async send(fieldList, bind) {
      const fields = fieldList === '' ? undefined : fieldList.split(',');
      let ids: string[] = [];
      const first = await call({ endpoint: 'leads.query', method: 'GET', build: () => leadQuery('id', (ids = [...new Set(bind())].map(String)), fields) });
      const leads = new Map<number, MarketoLead>();
      await followLeadPages(first, (token) => leadQuery('id', ids, fields, token), leads);
      return leads;
    },
  });

  /** `onSent` is told once every call carrying these ids has been admitted and sent. */
  async function getLeadsByIds(ids: readonly number[], fields?: readonly string[], onSent?: () => void): Promise<MarketoLead[]> {
    const key = fields?.join(',') ?? '';
    const unique = [...new Set(ids)];
    const answers = await idReads.rideInPieces(key, unique, READ_PIECE, onSent);
    return unique.flatMap((id) => answers.find((leads) => leads.has(id))?.get(id) ?? []);
  }

  // Look-ups by email share calls the same way (the initial sync matches every Dynamics record by
  // email): a call answers for every email it carried, each caller keeps what it asked for.
  const emailReads = createRideAlong<string, MarketoLead[]>({
    maxItems: MAX_BATCH,
    fill: fillPolicy(() => 0),
    async send(fieldList, bind) {
      const fields = fieldList === '' ? undefined : fieldList.split(',');
      let emails: string[] = [];
      const first = await call({ endpoint: 'leads.query', method: 'GET', build: () => leadQuery('email', (emails = [...new Set(bind())]), fields) });
      const leads = new Map<number, MarketoLead>();
      await followLeadPages(first, (token) => leadQuery('email', emails, fields, token), leads);
      return [...leads.values()];
    },
  });

  /**
   * Persons whose email is one of `emails` (any case), read together with other callers' look-ups;
   * each caller gets the persons of its own emails.
   */
  async function getLeadsByEmail(emails: readonly string[], fields?: readonly string[]): Promise<MarketoLead[]> {
    // the email comes back with every person, so a shared answer can be told apart
    const key = fields ? [...new Set([...fields, 'email'])].join(',') : '';
    const asked = [...new Set(emails.map((e) => e.toLowerCase()))];
    const answers = await emailReads.rideInPieces(key, asked, READ_PIECE);
    const wanted = new Set(asked);
    const leads = answers.flat().filter((lead) => typeof lead.email === 'string' && wanted.has(lead.email.toLowerCase()));
    return [...new Map(leads.map((lead) => [lead.id, lead])).values()];
  }

  type SyncBatchKey = { action: MarketoSyncAction; lookupField: 'id' | 'email'; partitionName?: string };
  const syncBatches = createRideAlong<Record<string, unknown>, MarketoSyncResult[]>({
    maxItems: MAX_BATCH,
    fill: fillPolicy(
      (key): number => (isCreate(key) ? emailReads.carrying(undefined, 2 * (fillOptions?.maxHoldMs ?? 0)) : idReads.carrying()),
      (key) => (isCreate(key) ? 2 : 1),
    ),
    async send(key, bind, admit) {
      const { action, lookupField, partitionName } = JSON.parse(key) as SyncBatchKey;
      let input: Record<string, unknown>[] = [];
      let bound = false;
      let envelope: MarketoEnvelope;
      try {
        envelope = await call({
          endpoint: 'leads.sync',
          method: 'POST',
          // built again before each resend: a record whose work lost its lease meanwhile leaves the call
          everyAttempt: true,
          build: async () => {
            if (!bound) bind();
            bound = true;
            input = await admit();
            if (input.length === 0) return null;
            return {
              endpoint: 'leads.sync',
              method: 'POST',
              path: '/rest/v1/leads.json',
              body: { action, lookupField, ...(partitionName === undefined ? {} : { partitionName }), input },
              recordsSent: input.length,
              // Marketo has no conditional write: a try that may have landed is never sent again
              // blindly (a createOnly would report 1005 for our own lead, an update could overwrite
              // an edit made since)
              idempotent: false,
            };
          },
        });
      } catch (error) {
        if (error instanceof NothingToSend) return [];
        throw error;
      }
      const results = parseResult(syncResultSchema, envelope, 'leads.sync');
      if (results.length !== input.length) {
        throw new MarketoApiError('permanent', { message: `sent ${input.length} records, got ${results.length} results`, endpoint: 'leads.sync', httpStatus: 200 });
      }
      return results;
    },
  });

  async function syncLeads(params: {
    action: MarketoSyncAction;
    lookupField: 'id' | 'email';
    input: readonly Record<string, unknown>[];
    partitionName?: string;
    /** the work's proof that it still holds its records' leases, checked right before each send */
    fence?: WriteFence | undefined;
  }): Promise<MarketoSyncResult[]> {
    const key: SyncBatchKey = { action: params.action, lookupField: params.lookupField, ...(params.partitionName === undefined ? {} : { partitionName: params.partitionName }) };
    const results: MarketoSyncResult[] = [];
    // one chunk after the other, as Marketo would apply a single list: a later record wins
    for (const part of chunk(params.input, MAX_BATCH)) {
      const { result, offset } = await syncBatches.ride(JSON.stringify(key), part, undefined, params.fence);
      results.push(...result.slice(offset, offset + part.length));
    }
    return results;
  }

  async function deleteLeads(ids: readonly number[]): Promise<MarketoDeleteResult[]> {
    const results: MarketoDeleteResult[] = [];
    for (const part of chunk(ids, MAX_BATCH)) {
      const envelope = await call({
        endpoint: 'leads.delete',
        method: 'POST',
        path: '/rest/v1/leads/delete.json',
        body: { input: part.map((id) => ({ id })) },
        recordsSent: part.length,
      });
      results.push(...parseResult(deleteResultSchema, envelope, 'leads.delete'));
    }
    return results;
  }

  let describeCache: { at: number; fields: Promise<MarketoFieldDescription[]> } | undefined;

  async function loadFieldDescriptions(): Promise<MarketoFieldDescription[]> {
    try {
      const envelope = await call({ endpoint: 'leads.describe2', method: 'GET', path: '/rest/v1/leads/describe2.json' });
      const [entry] = parseResult(describe2Schema, envelope, 'leads.describe2');
      if (entry) {
        const searchable = new Set((entry.searchableFields ?? []).flatMap((group) => (group.length === 1 ? group : [])));
        return entry.fields.map((f) => ({
          name: f.name,
          displayName: f.displayName,
          dataType: f.dataType,
          ...(f.length === undefined ? {} : { length: f.length }),
          readOnly: !f.updateable,
          updateable: f.updateable,
          crmManaged: f.crmManaged ?? false,
          searchable: searchable.has(f.name),
        }));
      }
    } catch (error) {
      if (!(error instanceof MarketoApiError) || error.kind !== 'permanent') throw error;
      logger?.info({ code: error.code }, 'marketo describe2 unavailable; using describe');
    }
    const envelope = await call({ endpoint: 'leads.describe', method: 'GET', path: '/rest/v1/leads/describe.json' });
    return parseResult(describeFieldSchema, envelope, 'leads.describe').flatMap((f) =>
      f.rest === undefined
        ? []
        : [
            {
              name: f.rest.name,
              displayName: f.displayName,
              dataType: f.dataType,
              ...(f.length === undefined ? {} : { length: f.length }),
              readOnly: f.rest.readOnly ?? false,
              updateable: !(f.rest.readOnly ?? false),
              crmManaged: false,
              searchable: false,
              ...(f.soap === undefined ? {} : { soapName: f.soap.name }),
            },
          ],
    );
  }

  /** Cached for a day (Adobe: describe results are cacheable for a day or more). */
  function describeLeadFields(opts: { refresh?: boolean } = {}): Promise<MarketoFieldDescription[]> {
    if (!describeCache || opts.refresh || now() - describeCache.at > DAY_MS) {
      const fields = loadFieldDescriptions();
      describeCache = { at: now(), fields };
      fields.catch(() => {
        if (describeCache?.fields === fields) describeCache = undefined;
      });
    }
    return describeCache.fields;
  }

  async function getPagingToken(since: Date): Promise<string> {
    const envelope = await call({
      endpoint: 'activities.pagingtoken',
      method: 'GET',
      path: '/rest/v1/activities/pagingtoken.json',
      query: { sinceDatetime: since.toISOString() },
    });
    if (!envelope.nextPageToken) {
      throw new MarketoApiError('permanent', { message: 'paging token missing from response', endpoint: 'activities.pagingtoken', httpStatus: 200 });
    }
    return envelope.nextPageToken;
  }

  async function activityPage(endpoint: string, path: string, sentToken: string, query: Record<string, string | undefined>): Promise<MarketoActivityPage> {
    const envelope = await call({ endpoint, method: 'GET', path, query: { ...query, nextPageToken: sentToken } });
    if (!envelope.nextPageToken) logger?.warn({ endpoint }, 'marketo feed page without nextPageToken; keeping the previous one');
    return {
      // Marketo always returns a token; if one is missing, re-reading from ours loses nothing
      nextPageToken: envelope.nextPageToken ?? sentToken,
      moreResult: envelope.moreResult ?? false,
      items: parseResult(activitySchema, envelope, endpoint),
    };
  }

  function getLeadChanges(params: { nextPageToken: string; fields: readonly string[]; batchSize?: number; leadIds?: readonly number[] }): Promise<MarketoActivityPage> {
    return activityPage('activities.leadchanges', '/rest/v1/activities/leadchanges.json', params.nextPageToken, {
      fields: params.fields.join(','),
      batchSize: String(Math.min(params.batchSize ?? MAX_BATCH, MAX_BATCH)),
      leadIds: params.leadIds?.join(','),
    });
  }

  function getDeletedLeads(params: { nextPageToken: string; batchSize?: number }): Promise<MarketoActivityPage> {
    return activityPage('activities.deletedleads', '/rest/v1/activities/deletedleads.json', params.nextPageToken, {
      batchSize: String(Math.min(params.batchSize ?? MAX_BATCH, MAX_BATCH)),
    });
  }

  function getActivities(params: { nextPageToken: string; activityTypeIds: readonly number[]; batchSize?: number; leadIds?: readonly number[] }): Promise<MarketoActivityPage> {
    return activityPage('activities', '/rest/v1/activities.json', params.nextPageToken, {
      activityTypeIds: params.activityTypeIds.join(','),
      batchSize: String(Math.min(params.batchSize ?? MAX_BATCH, MAX_BATCH)),
      leadIds: params.leadIds?.join(','),
    });
  }

  /**
   * Follows a feed until `moreResult` is false. Every page is yielded, empty ones included, so the
   * caller can persist `nextPageToken` after each. Marketo scans its store in blocks and may answer
   * many empty pages with moreResult:true; `maxEmptyPages` (default unlimited) stops early and the
   * caller resumes from the last persisted token on its next poll.
   */
  async function* followPages(fetchPage: (token: string) => Promise<MarketoActivityPage>, startToken: string, maxEmptyPages?: number): AsyncGenerator<MarketoActivityPage> {
    let nextToken = startToken;
    let emptyPages = 0;
    for (;;) {
      const page = await fetchPage(nextToken);
      yield page;
      nextToken = page.nextPageToken;
      if (!page.moreResult) return;
      emptyPages = page.items.length === 0 ? emptyPages + 1 : 0;
      if (maxEmptyPages !== undefined && emptyPages >= maxEmptyPages) return;
    }
  }

  async function getDailyUsage(): Promise<MarketoDailyUsage[]> {
    const envelope = await call({ endpoint: 'stats.usage', method: 'GET', path: '/rest/v1/stats/usage.json' });
    return parseResult(usageSchema, envelope, 'stats.usage');
  }

  return {
    getLeadsByIds,
    getLeadsByEmail,
    getLeadsByFilter,
    getListLeads,
    syncLeads,
    deleteLeads,
    describeLeadFields,
    getPagingToken,
    getLeadChanges,
    getDeletedLeads,
    getActivities,
    iterateLeadChanges: (params: { nextPageToken: string; fields: readonly string[]; batchSize?: number; leadIds?: readonly number[]; maxEmptyPages?: number }) =>
      followPages((token) => getLeadChanges({ ...params, nextPageToken: token }), params.nextPageToken, params.maxEmptyPages),
    iterateDeletedLeads: (params: { nextPageToken: string; batchSize?: number; maxEmptyPages?: number }) =>
      followPages((token) => getDeletedLeads({ ...params, nextPageToken: token }), params.nextPageToken, params.maxEmptyPages),
    iterateActivities: (params: { nextPageToken: string; activityTypeIds: readonly number[]; batchSize?: number; leadIds?: readonly number[]; maxEmptyPages?: number }) =>
      followPages((token) => getActivities({ ...params, nextPageToken: token }), params.nextPageToken, params.maxEmptyPages),
    getDailyUsage,
    /** the API-only user this client acts as, once a token was issued */
    apiUser: (): string | undefined => apiUser,
    stats(): MarketoClientStats {
      return structuredClone({ ...totals, dailyCalls: budget.deploymentDayUsed() });
    },
    /** calls the budget would admit at once now (its bucket); for tests that count instead of timing */
    callsAvailable(): Promise<number> {
      return Promise.resolve(limiter.available('calls'));
    },

    /** stops the budget's limiter; calls still queued are rejected */
    close(): Promise<void> {
      limiter.stop(new MarketoApiError('transient', { message: 'the Marketo client is closed', endpoint: 'client' }));
      return Promise.resolve();
    },
  };
}
