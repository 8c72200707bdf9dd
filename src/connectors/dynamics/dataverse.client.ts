import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { z } from 'zod';
import {
  DataverseApiError,
  DataverseAuthError,
  DataverseCodes,
  DataverseNotFoundError,
  DataversePermanentError,
  DataverseTransientError,
  dataverseErrorFromResponse,
} from './dataverse.errors.ts';
import type { WriteFence } from '../../sync/ports.ts';
import { createRideAlong } from '../ride-along.ts';
import type { VendorBudget } from '../budget/vendors.ts';
import { createBatchSizer, decodeBatch, encodeBatch, type BatchOperation, type BatchOperationAnswer } from './dataverse.batch.ts';
import { createDataversePacer, type DataverseBudget } from './dataverse.pacing.ts';
import {
  attributeMetadataSchema,
  attributePrivilegesSchema,
  collectionSchema,
  errorBodySchema,
  optionSetAttributeSchema,
  rowSchema,
  systemUserRowSchema,
  tokenErrorSchema,
  tokenResponseSchema,
  tombstoneSchema,
  whoAmIResponseSchema,
  type DataverseIdentity,
} from './dataverse.schemas.ts';

/** The synced tables, and the ones their company and owner fields are read from (one way). */
export type DataverseEntity = 'lead' | 'contact' | 'account' | 'systemuser';

export const dataverseEntitySets: Record<DataverseEntity, { set: string; key: string }> = {
  lead: { set: 'leads', key: 'leadid' },
  contact: { set: 'contacts', key: 'contactid' },
  account: { set: 'accounts', key: 'accountid' },
  systemuser: { set: 'systemusers', key: 'systemuserid' },
};

export type DataverseClientOptions = {
  /** environment URL, e.g. https://contoso.crm.dynamics.com (Web API lives under /api/data/v9.2/) */
  url: string;
  /**
   * false: creates ask for the org's duplicate rules (`MSCRM.SuppressDuplicateDetection: false`),
   * and one they match is refused (0x80040333). Default true, the Web API's own default.
   */
  suppressDuplicateDetection?: boolean;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** default https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token */
  tokenUrl?: string;
  fetch?: typeof fetch;
  /** clock in epoch ms; used for token expiry and the 429 pause */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  logger?: Logger;
  /** per HTTP call; default 120000 (the platform aborts a message after 2 minutes) */
  timeoutMs?: number;
  /** odata.maxpagesize; default 5000 (the platform cap) */
  maxPageSize?: number;
  /** the share of the service protection limits this client spends (see dataverse.pacing.ts) */
  budget?: DataverseBudget;
  /** this replica's slice of the deployment's Dataverse budget (src/connectors/budget/); without it the client holds `budget` whole */
  sharedBudget?: VendorBudget;
  /** operations in the first $batch of writes; default 10 (Microsoft's advice), grows while batches are fast */
  initialBatchSize?: number;
  /** a $batch taking longer than this shrinks the next; default 10,000 ms */
  batchTargetMs?: number;
  /** longest request URL sent; longer reads are split. Default 16,384 (Dataverse allows 32 KB) */
  maxUrlLength?: number;
  /** retries of one call after 5xx/network/timeout; default 3 */
  transientRetries?: number;
  /** retries of one call after 429; default 10 (each waits the Retry-After the server asked for) */
  rateLimitRetries?: number;
  /** first backoff for transient retries in ms, doubled each time; default 500 */
  retryBaseDelayMs?: number;
  /** ids per $filter when reading many rows by id; default: as many as the URL length allows */
  idChunkSize?: number;
};

export type DataverseValue = unknown;

/**
 * A row as the Web API returns it. `values` holds the selected columns by logical name (lookups as
 * `_x_value`). A secured column the sync user cannot read comes back as null and is indistinguishable
 * from an empty value: callers must never treat that null as "cleared in Dynamics" — consult
 * `getColumnAccess()` and leave unreadable columns out of the comparison.
 */
export type DataverseRecord = {
  entity: DataverseEntity;
  id: string;
  /** weak ETag, e.g. W/"12345"; send back in If-Match */
  etag: string;
  versionnumber: number;
  /** UTC ISO-8601, whole seconds */
  modifiedon: string;
  /** systemuserid of the last writer (`_modifiedby_value`); equals whoAmI().userId for the sync's own writes */
  modifiedby: string | null;
  values: Record<string, DataverseValue>;
  /** rows read through `$expand`, by navigation property; null when the lookup is empty or points elsewhere */
  related?: Record<string, DataverseRecord | null>;
};

/** A single-valued navigation property read with the record (`$expand=nav($select=...)`). */
export type DataverseExpansion = { navigation: string; table: DataverseEntity; columns: readonly string[] };

export type DataverseChangePage = {
  upserts: DataverseRecord[];
  /** ids of rows deleted since the previous delta link */
  deletedIds: string[];
  /** present on the last page only: persist it after processing that page */
  deltaLink?: string;
};

export type DataverseOwner = { systemUserId: string } | { domainName: string };

export type DataverseAttribute = {
  logicalName: string;
  metadataId: string;
  attributeType: string;
  isSecured: boolean;
  isValidForRead: boolean;
  isValidForCreate: boolean;
  isValidForUpdate: boolean;
  requiredLevel: string | null;
  maxLength: number | null;
  /** choice columns (Picklist/State/Status) and two-options (Boolean: 0 = false, 1 = true) */
  options: { value: number; label: string }[] | null;
};

export type DataverseColumnAccess = DataverseAttribute & {
  /** the sync user can see values (not secured, or secured with a read grant) */
  canRead: boolean;
  canCreate: boolean;
  canUpdate: boolean;
};

export type DataverseEndpointStats = { calls: number; errors: number; retries: number };
export type DataverseClientStats = {
  endpoints: Record<string, DataverseEndpointStats>;
  totalCalls: number;
  totalErrors: number;
  /** requests answered 429 (the older name of `throttled`) */
  rateLimitedPauses: number;
  tokenRequests: number;
  /** requests answered 429 */
  throttled: number;
  /** throttling episodes (each logged once) */
  throttlingEpisodes: number;
  /** $batch requests sent and the operations they carried */
  batches: number;
  batchOperations: number;
  /** operations the next $batch of writes may carry */
  batchSize: number;
};

export type DataverseClient = {
  readonly apiUrl: string;
  /** the sync user's identity; fetched once and cached (echo suppression compares against userId) */
  whoAmI(): Promise<DataverseIdentity>;
  getRecord(entity: DataverseEntity, id: string, columns: readonly string[]): Promise<DataverseRecord | null>;
  getRecords(entity: DataverseEntity, ids: readonly string[], columns: readonly string[], expand?: readonly DataverseExpansion[]): Promise<DataverseRecord[]>;
  findByEmail(entity: DataverseEntity, email: string, columns: readonly string[], expand?: readonly DataverseExpansion[]): Promise<DataverseRecord[]>;
  createRecord(
    entity: DataverseEntity,
    values: Record<string, DataverseValue>,
    options?: { owner?: DataverseOwner; columns?: readonly string[]; fence?: WriteFence | undefined },
  ): Promise<DataverseRecord>;
  updateRecord(
    entity: DataverseEntity,
    id: string,
    values: Record<string, DataverseValue>,
    options?: { etag?: string; columns?: readonly string[]; fence?: WriteFence | undefined },
  ): Promise<DataverseRecord>;
  deleteRecord(entity: DataverseEntity, id: string, options?: { etag?: string }): Promise<void>;
  assignOwner(entity: DataverseEntity, id: string, owner: DataverseOwner): Promise<void>;
  resolveSystemUserId(owner: DataverseOwner): Promise<string>;
  /** Pages of the rows whose lookup column (`_x_value`) holds `id`, e.g. an account's contacts. */
  queryByLookup(entity: DataverseEntity, lookupProperty: string, id: string, columns: readonly string[]): AsyncGenerator<DataverseRecord[], void, undefined>;
  queryModifiedSince(
    entity: DataverseEntity,
    since: Date,
    columns: readonly string[],
  ): AsyncGenerator<DataverseRecord[], void, undefined>;
  trackChanges(
    entity: DataverseEntity,
    columns: readonly string[],
    deltaLink?: string,
  ): AsyncGenerator<DataverseChangePage, void, undefined>;
  getAttributes(entity: DataverseEntity): Promise<DataverseAttribute[]>;
  getColumnAccess(entity: DataverseEntity): Promise<DataverseColumnAccess[]>;
  stats(): DataverseClientStats;
  /** stops the request budget's timers; calls still waiting for it are refused */
  close(): Promise<void>;
};

const API_PATH = '/api/data/v9.2/';
// msal's DEFAULT_TOKEN_RENEWAL_OFFSET_SEC: never send a token that may expire in flight
const TOKEN_RENEWAL_OFFSET_MS = 300_000;
const ALWAYS_SELECTED = ['versionnumber', 'modifiedon', '_modifiedby_value'];

type CallOptions = {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** absolute URL or path relative to the Web API root */
  url: string;
  endpoint: string;
  /** JSON (serialised here) or a ready text body (a $batch) */
  body?: unknown;
  headers?: Record<string, string>;
};

/** A call whose request is built when the budget admits it (see ride-along.ts); retries resend it. */
/**
 * A call built when the budget admits it; with `everyAttempt`, built again before each resend (a
 * $batch of fenced writes: an operation whose work lost its lease leaves it). `build` answering
 * null means nothing is left to send.
 */
type DeferredCall = {
  endpoint: string;
  build: () => CallOptions | null | Promise<CallOptions | null>;
  everyAttempt?: boolean;
  /** each answer, while the request still holds its place in the budget */
  answered?: (raw: RawResponse) => void;
};

/** A deferred call that had nothing left to send when admitted: every operation's fence had failed. */
class NothingToSend extends Error {}

type RawResponse = { status: number; headers: Headers; json: unknown; text?: string; elapsedMs?: number };

export function createDataverseClient(options: DataverseClientOptions): DataverseClient {
  const baseUrl = options.url.replace(/\/+$/, '');
  const apiUrl = baseUrl + API_PATH;
  const tokenUrl =
    options.tokenUrl ?? `https://login.microsoftonline.com/${encodeURIComponent(options.tenantId)}/oauth2/v2.0/token`;
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const logger = options.logger;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const maxPageSize = Math.min(options.maxPageSize ?? 5000, 5000);
  const pacer = createDataversePacer({
    ...(options.budget ? { budget: options.budget } : {}),
    now,
    sleep,
    ...(logger ? { logger } : {}),
    ...(options.sharedBudget ? { shared: options.sharedBudget } : { key: `dataverse:${new URL(options.url).host}:${options.clientId}` }),
  });
  const maxUrlLength = options.maxUrlLength ?? 16_384;
  const batchSizer = createBatchSizer({ initial: options.initialBatchSize ?? 10, targetMs: options.batchTargetMs ?? 10_000 });
  let batches = 0;
  let batchOperations = 0;
  const transientRetries = options.transientRetries ?? 3;
  const rateLimitRetries = options.rateLimitRetries ?? 10;
  const retryBaseDelayMs = options.retryBaseDelayMs ?? 500;
  const idChunkSize = options.idChunkSize;

  const endpointStats = new Map<string, DataverseEndpointStats>();
  let tokenRequests = 0;

  function count(endpoint: string, field: keyof DataverseEndpointStats): void {
    let s = endpointStats.get(endpoint);
    if (!s) {
      s = { calls: 0, errors: 0, retries: 0 };
      endpointStats.set(endpoint, s);
    }
    s[field] += 1;
  }

  // ---- token -------------------------------------------------------------------------------------
  let cachedToken: { value: string; expiresAt: number } | undefined;
  let tokenInFlight: Promise<string> | undefined;

  async function requestToken(): Promise<string> {
    tokenRequests += 1;
    count('POST token', 'calls');
    const form = new URLSearchParams({
      client_id: options.clientId,
      client_secret: options.clientSecret,
      scope: `${baseUrl}/.default`,
      grant_type: 'client_credentials',
    });
    let response: Response;
    try {
      response = await doFetch(tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: form.toString(),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (cause) {
      count('POST token', 'errors');
      throw new DataverseTransientError('Token endpoint unreachable', { cause, endpoint: 'POST token' });
    }
    const json = await readJson(response);
    if (!response.ok) {
      count('POST token', 'errors');
      const parsed = tokenErrorSchema.safeParse(json);
      const detail = parsed.success ? (parsed.data.error_description ?? parsed.data.error) : `HTTP ${response.status}`;
      const code = parsed.success ? parsed.data.error : undefined;
      const errOptions = { httpStatus: response.status, endpoint: 'POST token', ...(code ? { code } : {}) };
      if (response.status >= 500 || response.status === 429) throw new DataverseTransientError(detail, errOptions);
      throw new DataverseAuthError(`Token request refused: ${detail}`, errOptions);
    }
    const token = tokenResponseSchema.safeParse(json);
    if (!token.success) {
      count('POST token', 'errors');
      throw new DataverseAuthError(`Token response not understood: ${token.error.message}`, { endpoint: 'POST token' });
    }
    cachedToken = { value: token.data.access_token, expiresAt: now() + token.data.expires_in * 1000 };
    return token.data.access_token;
  }

  function getToken(): Promise<string> {
    if (cachedToken && now() < cachedToken.expiresAt - TOKEN_RENEWAL_OFFSET_MS) return Promise.resolve(cachedToken.value);
    // concurrent callers share one token request
    tokenInFlight ??= requestToken().finally(() => {
      tokenInFlight = undefined;
    });
    return tokenInFlight;
  }

  // ---- HTTP --------------------------------------------------------------------------------------
  function resolveUrl(url: string): string {
    const absolute = /^https?:\/\//i.test(url) ? url : apiUrl + url.replace(/^\/+/, '');
    // nextLink/deltaLink come from the server; never send our token to another origin
    if (!absolute.startsWith(apiUrl)) {
      throw new DataversePermanentError(`Refusing to call ${absolute}: not under ${apiUrl}`);
    }
    return absolute;
  }

  async function sendOnce(call: CallOptions, token: string): Promise<RawResponse> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${token}`,
      Accept: 'application/json',
      'OData-MaxVersion': '4.0',
      'OData-Version': '4.0',
      ...call.headers,
    };
    const init: RequestInit = { method: call.method, headers, signal: AbortSignal.timeout(timeoutMs) };
    if (typeof call.body === 'string') init.body = call.body;
    else if (call.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(call.body);
    }
    let response: Response;
    try {
      response = await doFetch(resolveUrl(call.url), init);
    } catch (cause) {
      if (cause instanceof DataverseApiError) throw cause;
      const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
      throw new DataverseTransientError(timedOut ? `Timed out after ${timeoutMs} ms` : 'Network error', {
        cause,
        endpoint: call.endpoint,
      });
    }
    if (/^multipart\/mixed/i.test(response.headers.get('content-type') ?? '')) {
      return { status: response.status, headers: response.headers, json: undefined, text: await response.text() };
    }
    const json = response.status === 204 || response.status === 304 ? undefined : await readJson(response);
    return { status: response.status, headers: response.headers, json };
  }

  /** One request, admitted by the budget; its time and the server's headers feed the budget back. */
  function paced(spec: CallOptions | DeferredCall, bound: { call?: CallOptions }): Promise<{ raw: RawResponse; token: string }> {
    return pacer.schedule(async () => {
      if (!('build' in spec)) bound.call = spec;
      else if (!bound.call || spec.everyAttempt) {
        const built = await spec.build();
        if (!built) throw new NothingToSend();
        bound.call = built;
      }
      const request = bound.call;
      const token = await getToken();
      count(request.endpoint, 'calls');
      const started = now();
      const raw = await sendOnce(request, token);
      raw.elapsedMs = Math.max(0, now() - started);
      pacer.observe(raw.headers, raw.elapsedMs);
      if ('build' in spec) spec.answered?.(raw);
      if (raw.status !== 429) pacer.succeeded();
      return { raw, token };
    });
  }

  function errorFrom(call: CallOptions, raw: RawResponse): DataverseApiError {
    const body = errorBodySchema.safeParse(raw.json);
    const code = body.success ? (body.data.error.code ?? '') : '';
    const message = body.success ? (body.data.error.message ?? '') : '';
    const retryAfterMs = parseRetryAfter(raw.headers.get('retry-after'), now());
    return dataverseErrorFromResponse(raw.status, code, message, {
      endpoint: call.endpoint,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    });
  }

  async function call(spec: CallOptions | DeferredCall): Promise<RawResponse> {
    const bound: { call?: CallOptions } = {};
    let rateLimitedTries = 0;
    let transientTries = 0;
    let renewedToken = false;
    for (;;) {
      let raw: RawResponse;
      let tokenUsed: string;
      try {
        ({ raw, token: tokenUsed } = await paced(spec, bound));
      } catch (error) {
        if (error instanceof NothingToSend) throw error;
        count(spec.endpoint, 'errors');
        if (error instanceof DataverseTransientError && transientTries < transientRetries) {
          transientTries += 1;
          count(spec.endpoint, 'retries');
          await sleep(retryBaseDelayMs * 2 ** (transientTries - 1));
          continue;
        }
        throw error;
      }
      if (raw.status < 400 || (raw.status === 400 && raw.text !== undefined)) return raw;
      count(spec.endpoint, 'errors');
      const error = errorFrom(bound.call ?? { method: 'GET', url: '', endpoint: spec.endpoint }, raw);
      if (raw.status === 401 && !renewedToken) {
        // a token revoked or expired early: renew once, then give up as `auth`
        renewedToken = true;
        if (cachedToken?.value === tokenUsed) cachedToken = undefined;
        count(spec.endpoint, 'retries');
        continue;
      }
      if (error.kind === 'rate_limited') {
        // the docs: wait exactly Retry-After, and pause every request of the user meanwhile
        pacer.throttled(error.retryAfterMs ?? 1000 * 2 ** Math.min(rateLimitedTries, 6), error.code);
        if (error.code === DataverseCodes.executionTimeLimit) batchSizer.shrink();
        if (rateLimitedTries < rateLimitRetries) {
          rateLimitedTries += 1;
          count(spec.endpoint, 'retries');
          continue;
        }
      }
      if (error.kind === 'transient' && transientTries < transientRetries) {
        transientTries += 1;
        count(spec.endpoint, 'retries');
        await sleep(retryBaseDelayMs * 2 ** (transientTries - 1));
        continue;
      }
      throw error;
    }
  }

  function parse<T extends z.ZodType>(schema: T, raw: RawResponse, endpoint: string): z.infer<T> {
    const parsed = schema.safeParse(raw.json);
    if (!parsed.success) {
      throw new DataversePermanentError(`Unexpected Dataverse response for ${endpoint}: ${parsed.error.message}`, {
        httpStatus: raw.status,
        endpoint,
      });
    }
    return parsed.data;
  }

  // ---- rows --------------------------------------------------------------------------------------
  function selectList(entity: DataverseEntity, columns: readonly string[]): string {
    const key = dataverseEntitySets[entity].key;
    return [...new Set([key, ...columns, ...ALWAYS_SELECTED])].join(',');
  }

  function toRecord(entity: DataverseEntity, row: Record<string, unknown>, endpoint: string): DataverseRecord {
    const key = dataverseEntitySets[entity].key;
    const parsed = rowSchema.safeParse(row);
    const id = row[key];
    if (!parsed.success || typeof id !== 'string') {
      throw new DataversePermanentError(`Unexpected ${entity} row from ${endpoint}`, { endpoint });
    }
    const values: Record<string, DataverseValue> = {};
    for (const [name, value] of Object.entries(row)) {
      if (name.includes('@') || name === key || ALWAYS_SELECTED.includes(name)) continue;
      values[name] = value;
    }
    return {
      entity,
      id,
      etag: parsed.data['@odata.etag'],
      versionnumber: parsed.data.versionnumber,
      modifiedon: parsed.data.modifiedon,
      modifiedby: parsed.data._modifiedby_value ?? null,
      values,
    };
  }

  const pageHeaders = () => ({ Prefer: `odata.maxpagesize=${maxPageSize}` });

  /** Pages of a query; the first URL may be built only when the budget admits it (`build`). */
  async function* pages(
    entity: DataverseEntity,
    first: string | (() => string),
    endpoint: string,
  ): AsyncGenerator<DataverseRecord[], void, undefined> {
    let url: string | undefined;
    let spec: CallOptions | DeferredCall =
      typeof first === 'string'
        ? { method: 'GET', url: first, endpoint, headers: pageHeaders() }
        : { endpoint, build: () => ({ method: 'GET', url: first(), endpoint, headers: pageHeaders() }) };
    for (;;) {
      const raw = await call(spec);
      const page = parse(collectionSchema, raw, endpoint);
      yield page.value.map((row) => toRecord(entity, row, endpoint));
      url = page['@odata.nextLink'];
      if (url === undefined) return;
      spec = { method: 'GET', url, endpoint, headers: pageHeaders() };
    }
  }

  async function collect(entity: DataverseEntity, first: string | (() => string), endpoint: string): Promise<DataverseRecord[]> {
    const rows: DataverseRecord[] = [];
    for await (const page of pages(entity, first, endpoint)) rows.push(...page);
    return rows;
  }

  // ---- batched reads -----------------------------------------------------------------------------
  // Reads of concurrent callers for the same table and columns share one In-filter query, filled
  // when the budget admits it with as many values as the URL length allows.
  type ReadKey = { entity: DataverseEntity; property: string; columns: string[]; order: string; expand: DataverseExpansion[] };
  const expandList = (key: ReadKey) =>
    key.expand.map((e) => `${e.navigation}($select=${selectList(e.table, e.columns)})`).join(',');
  /** the expanded rows move from `values` to `related` */
  function withRelated(record: DataverseRecord, expand: readonly DataverseExpansion[], endpoint: string): DataverseRecord {
    if (expand.length === 0) return record;
    const values = { ...record.values };
    const related: Record<string, DataverseRecord | null> = {};
    for (const e of expand) {
      const row = values[e.navigation];
      delete values[e.navigation];
      related[e.navigation] = row && typeof row === 'object' ? toRecord(e.table, row as Record<string, unknown>, endpoint) : null;
    }
    return { ...record, values, related };
  }
  const IN_VALUE_ROOM = (value: string) => encodeURIComponent(`${quote(value)},`).length;
  function inQueryUrl(key: ReadKey, values: readonly string[]): string {
    const { set } = dataverseEntitySets[key.entity];
    const filter = `Microsoft.Dynamics.CRM.In(PropertyName='${key.property}',PropertyValues=[${values.map((v) => quote(v)).join(',')}])`;
    const expand = key.expand.length > 0 ? `&$expand=${expandList(key)}` : '';
    return `${set}?$select=${selectList(key.entity, key.columns)}${expand}&$filter=${encodeURIComponent(filter)}&$orderby=${key.order}`;
  }
  function inQueryRoom(keyText: string): number {
    const key = JSON.parse(keyText) as ReadKey;
    const room = maxUrlLength - (apiUrl.length + inQueryUrl(key, []).length);
    return idChunkSize === undefined ? room : Math.min(room, idChunkSize * IN_VALUE_ROOM('00000000-0000-0000-0000-000000000000'));
  }
  const inReads = createRideAlong<string, DataverseRecord[]>({
    maxItems: 5000,
    capacity: inQueryRoom,
    weigh: IN_VALUE_ROOM,
    send(keyText, bind) {
      const key = JSON.parse(keyText) as ReadKey;
      const endpoint = `GET ${dataverseEntitySets[key.entity].set}`;
      return collect(key.entity, () => inQueryUrl(key, [...new Set(bind())]), endpoint).then((rows) => rows.map((row) => withRelated(row, key.expand, endpoint)));
    },
  });

  /** Rows whose `property` is one of `values`, read together with other callers' values. */
  async function readIn(key: ReadKey, values: readonly string[]): Promise<DataverseRecord[]> {
    const keyText = JSON.stringify(key);
    const room = inQueryRoom(keyText);
    const chunks: string[][] = [];
    let current: string[] = [];
    let used = 0;
    for (const value of values) {
      const w = IN_VALUE_ROOM(value);
      if (current.length > 0 && used + w > room) {
        chunks.push(current);
        current = [];
        used = 0;
      }
      current.push(value);
      used += w;
    }
    if (current.length > 0) chunks.push(current);
    const rides = await Promise.all(chunks.map((chunk) => inReads.ride(keyText, chunk)));
    // a shared query answers for everyone who rode it: keep one copy of each row
    const rows = new Map<string, DataverseRecord>();
    for (const ride of rides) for (const row of ride.result) rows.set(row.id.toLowerCase(), row);
    return [...rows.values()];
  }

  // ---- batched writes ----------------------------------------------------------------------------
  // The writes of all work in flight ride in one $batch, filled when the budget admits it; each
  // operation keeps its own answer (see dataverse.batch.ts for why no change sets). A batch lost to
  // a timeout or 5xx is sent again as it was: an update that had run then answers 412 (its If-Match
  // is stale: the caller re-reads), a create answers duplicate key (its id is ours: read back below).
  // A 429 for a batch means nothing ran.
  async function sendBatch(bind: () => BatchOperation[], admit: () => Promise<BatchOperation[]>): Promise<BatchOperationAnswer[]> {
    let operations: BatchOperation[] = [];
    let bound = false;
    let raw: RawResponse;
    try {
      raw = await call({
        endpoint: 'POST $batch',
        // built again before each resend: an operation whose work lost its lease meanwhile leaves it
        everyAttempt: true,
        build: async () => {
          if (!bound) bind();
          bound = true;
          operations = await admit();
          if (operations.length === 0) return null;
          const { contentType, body } = encodeBatch(new URL(apiUrl).pathname, operations);
          batches += 1;
          batchOperations += operations.length;
          return {
            method: 'POST',
            url: '$batch',
            endpoint: 'POST $batch',
            body,
            headers: { 'Content-Type': contentType, Prefer: 'odata.continue-on-error' },
          };
        },
        // measured before the budget lets the next batch be built, which is sized by this answer
        answered: (raw) => {
          if (raw.status === 200 && raw.text !== undefined) batchSizer.observe(operations.length, raw.elapsedMs ?? 0);
        },
      });
    } catch (error) {
      if (error instanceof NothingToSend) return [];
      throw error;
    }
    if (raw.text === undefined || raw.status !== 200) {
      // continue-on-error ignored: the answer holds one failure and says nothing of the others
      throw new DataverseTransientError(`$batch answered HTTP ${raw.status} without an answer per operation`, { endpoint: 'POST $batch', httpStatus: raw.status });
    }
    const answers = decodeBatch(raw.text, raw.headers.get('content-type'));
    return operations.map(
      (_, i) =>
        answers[i] ?? { status: 503, headers: {}, json: { error: { code: '', message: `no answer for operation ${i + 1} of the $batch` } } },
    );
  }
  // A batch's operations run one after another (at 20 ms each, 40 writes in one request take 0.9 s).
  // At a steady rate the writes go as several small batches in parallel, whose requests the budget
  // easily affords (at the most, 150 writes a second in batches of 15 spend 10 of its 18 requests a
  // second); a burst, or a backlog, fills each batch as far as its size allows.
  const STEADY_WRITES_PER_S = 150;
  const SPLIT_BATCH = 15;
  let writeRate = { perSecond: 0, at: now() };
  function wrote(operations: number): void {
    // decaying over a second: the rate of the last second or so
    const at = now();
    writeRate = { perSecond: writeRate.perSecond * Math.exp(-(at - writeRate.at) / 1000) + operations, at };
  }
  function writeCapacity(waiting: number): number {
    const steady = writeRate.perSecond * Math.exp(-(now() - writeRate.at) / 1000) < STEADY_WRITES_PER_S;
    // a backlog of a second's worth at that rate fills batches too, however slowly it formed
    return steady && waiting < STEADY_WRITES_PER_S ? Math.min(SPLIT_BATCH, batchSizer.size()) : batchSizer.size();
  }
  // Until one batch has answered, its size is a cautious guess: the batches of a first burst go one
  // at a time, so the second carries everything that queued meanwhile at the size the first measured,
  // instead of a dozen guesses of ten going out together.
  let sizeMeasured: Promise<void> | undefined;
  const writes = createRideAlong<BatchOperation, BatchOperationAnswer[]>({
    maxItems: 1000,
    capacity: (_key, waiting) => writeCapacity(waiting),
    send(_key, bind, admit) {
      if (sizeMeasured) return sizeMeasured.then(() => sendBatch(bind, admit));
      const first = sendBatch(bind, admit);
      sizeMeasured = first.then(
        () => undefined,
        () => undefined,
      );
      return first;
    },
  });

  /** One write in the next $batch: its own answer, or its own typed error. */
  async function write(operation: BatchOperation, endpoint: string, fence?: WriteFence): Promise<BatchOperationAnswer> {
    wrote(1);
    const { result, offset } = await writes.ride('writes', [operation], undefined, fence);
    const answer = result[offset]!;
    if (answer.status < 400) return answer;
    const body = errorBodySchema.safeParse(answer.json);
    throw dataverseErrorFromResponse(answer.status, body.success ? (body.data.error.code ?? '') : '', body.success ? (body.data.error.message ?? '') : '', {
      endpoint,
    });
  }

  let identity: Promise<DataverseIdentity> | undefined;

  async function resolveSystemUserId(owner: DataverseOwner): Promise<string> {
    if ('systemUserId' in owner) return owner.systemUserId;
    const filter = `domainname eq ${quote(owner.domainName)}`;
    const raw = await call({
      method: 'GET',
      url: `systemusers?$select=systemuserid&$filter=${encodeURIComponent(filter)}`,
      endpoint: 'GET systemusers',
    });
    const page = parse(collectionSchema, raw, 'GET systemusers');
    const first = page.value[0];
    if (first === undefined) {
      throw new DataverseNotFoundError(`No Dynamics user with domain name ${owner.domainName}`, {
        endpoint: 'GET systemusers',
      });
    }
    return systemUserRowSchema.parse(first).systemuserid;
  }

  async function getAttributes(entity: DataverseEntity): Promise<DataverseAttribute[]> {
    const base = `EntityDefinitions(LogicalName='${entity}')/Attributes`;
    const endpoint = 'GET EntityDefinitions/Attributes';
    const select =
      'LogicalName,MetadataId,AttributeType,IsSecured,IsValidForRead,IsValidForCreate,IsValidForUpdate,AttributeOf,RequiredLevel';
    const [all, ...optionSets] = await Promise.all([
      call({ method: 'GET', url: `${base}?$select=${select}`, endpoint }),
      ...['PicklistAttributeMetadata', 'StateAttributeMetadata', 'StatusAttributeMetadata', 'BooleanAttributeMetadata'].map(
        (cast) =>
          call({
            method: 'GET',
            url: `${base}/Microsoft.Dynamics.CRM.${cast}?$select=LogicalName&$expand=OptionSet`,
            endpoint,
          }),
      ),
    ]);
    const options = new Map<string, { value: number; label: string }[]>();
    for (const raw of optionSets) {
      for (const row of parse(collectionSchema, raw, endpoint).value) {
        const attr = optionSetAttributeSchema.parse(row);
        const set = attr.OptionSet;
        if (!set) continue;
        const list = set.Options ?? [set.FalseOption, set.TrueOption].filter((o) => o != null);
        options.set(
          attr.LogicalName,
          list.map((o) => ({ value: o.Value, label: o.Label?.UserLocalizedLabel?.Label ?? String(o.Value) })),
        );
      }
    }
    return parse(collectionSchema, all, endpoint).value.map((row) => {
      const a = attributeMetadataSchema.parse(row);
      return {
        logicalName: a.LogicalName,
        metadataId: a.MetadataId,
        attributeType: a.AttributeType,
        isSecured: a.IsSecured ?? false,
        isValidForRead: a.IsValidForRead ?? false,
        isValidForCreate: a.IsValidForCreate ?? false,
        isValidForUpdate: a.IsValidForUpdate ?? false,
        requiredLevel: a.RequiredLevel?.Value ?? null,
        maxLength: a.MaxLength ?? null,
        options: options.get(a.LogicalName) ?? null,
      };
    });
  }

  function keyUrl(entity: DataverseEntity, id: string): string {
    return `${dataverseEntitySets[entity].set}(${encodeGuid(id)})`;
  }

  const client: DataverseClient = {
    apiUrl,

    whoAmI() {
      identity ??= call({ method: 'GET', url: 'WhoAmI', endpoint: 'GET WhoAmI' })
        .then((raw) => {
          const who = parse(whoAmIResponseSchema, raw, 'GET WhoAmI');
          return { userId: who.UserId, businessUnitId: who.BusinessUnitId, organizationId: who.OrganizationId };
        })
        .catch((error: unknown) => {
          identity = undefined;
          throw error;
        });
      return identity;
    },

    async getRecord(entity, id, columns) {
      const endpoint = `GET ${dataverseEntitySets[entity].set}(id)`;
      try {
        const raw = await call({
          method: 'GET',
          url: `${keyUrl(entity, id)}?$select=${selectList(entity, columns)}`,
          endpoint,
        });
        return toRecord(entity, parse(rowSchema, raw, endpoint), endpoint);
      } catch (error) {
        if (error instanceof DataverseNotFoundError) return null;
        throw error;
      }
    },

    async getRecords(entity, ids, columns, expand = []) {
      const { key } = dataverseEntitySets[entity];
      const unique = [...new Set(ids.map((id) => encodeGuid(id)))];
      const wanted = new Set(unique);
      const rows = await readIn({ entity, property: key, columns: [...columns].sort(), order: `${key}%20asc`, expand: [...expand] }, unique);
      return rows.filter((row) => wanted.has(row.id.toLowerCase()));
    },

    async findByEmail(entity, email, columns, expand = []) {
      const { key } = dataverseEntitySets[entity];
      const wanted = email.toLowerCase();
      // the email column is selected to tell the rows of concurrent callers apart
      const selected = [...new Set([...columns, 'emailaddress1'])].sort();
      const rows = await readIn({ entity, property: 'emailaddress1', columns: selected, order: `createdon%20asc,${key}%20asc`, expand: [...expand] }, [email]);
      return rows
        .filter((row) => typeof row.values.emailaddress1 === 'string' && row.values.emailaddress1.toLowerCase() === wanted)
        .map((row) => (columns.includes('emailaddress1') ? row : { ...row, values: withoutKey(row.values, 'emailaddress1') }));
    },

    async createRecord(entity, values, createOptions = {}) {
      const { set, key } = dataverseEntitySets[entity];
      // A client-chosen id makes a retried create detectable: a second POST of the same id is refused as a duplicate.
      const supplied = values[key];
      const id = typeof supplied === 'string' ? supplied : randomUUID();
      const body: Record<string, unknown> = { ...values, [key]: id };
      if (createOptions.owner) {
        body['ownerid@odata.bind'] = `/systemusers(${await resolveSystemUserId(createOptions.owner)})`;
      }
      const endpoint = `POST ${set}`;
      const select = selectList(entity, createOptions.columns ?? Object.keys(values).filter((c) => !c.includes('@')));
      try {
        const headers: Record<string, string> = { Prefer: 'return=representation', ...(options.suppressDuplicateDetection === false ? { 'MSCRM.SuppressDuplicateDetection': 'false' } : {}) };
        const answer = await write({ method: 'POST', url: `${set}?$select=${select}`, body, headers }, endpoint, createOptions.fence);
        return toRecord(entity, parse(rowSchema, { status: answer.status, headers: new Headers(), json: answer.json }, endpoint), endpoint);
      } catch (error) {
        // the first attempt may have committed before a 5xx/timeout reached us
        if (error instanceof DataverseApiError && error.code === DataverseCodes.duplicateKey) {
          const existing = await client.getRecord(entity, id, createOptions.columns ?? Object.keys(values));
          if (existing) return existing;
        }
        throw error;
      }
    },

    async updateRecord(entity, id, values, updateOptions = {}) {
      const { set, key } = dataverseEntitySets[entity];
      const endpoint = `PATCH ${set}(id)`;
      const select = selectList(entity, updateOptions.columns ?? Object.keys(values).filter((c) => !c.includes('@')));
      const body = { ...values };
      delete body[key];
      // return=representation: the row as stored, after any synchronous plug-in rewrote a value
      const answer = await write(
        {
          method: 'PATCH',
          url: `${keyUrl(entity, id)}?$select=${select}`,
          body,
          // If-Match: * keeps an update from turning into an upsert when the row is gone
          headers: { Prefer: 'return=representation', 'If-Match': updateOptions.etag ?? '*' },
        },
        endpoint,
        updateOptions.fence,
      );
      return toRecord(entity, parse(rowSchema, { status: answer.status, headers: new Headers(), json: answer.json }, endpoint), endpoint);
    },

    async deleteRecord(entity, id, deleteOptions = {}) {
      const set = dataverseEntitySets[entity].set;
      await call({
        method: 'DELETE',
        url: keyUrl(entity, id),
        endpoint: `DELETE ${set}(id)`,
        ...(deleteOptions.etag ? { headers: { 'If-Match': deleteOptions.etag } } : {}),
      });
    },

    async assignOwner(entity, id, owner) {
      const userId = await resolveSystemUserId(owner);
      await call({
        method: 'PATCH',
        url: keyUrl(entity, id),
        endpoint: `PATCH ${dataverseEntitySets[entity].set}(id)`,
        body: { 'ownerid@odata.bind': `/systemusers(${encodeGuid(userId)})` },
        headers: { 'If-Match': '*' },
      });
    },

    resolveSystemUserId,

    queryByLookup(entity, lookupProperty, id, columns) {
      const { set, key } = dataverseEntitySets[entity];
      if (!/^_[a-z0-9_]+_value$/.test(lookupProperty)) throw new DataversePermanentError(`Not a lookup property: ${lookupProperty}`);
      const filter = `${lookupProperty} eq ${encodeGuid(id)}`;
      const url = `${set}?$select=${selectList(entity, columns)}&$filter=${encodeURIComponent(filter)}&$orderby=${key}%20asc`;
      return pages(entity, url, `GET ${set} (by ${lookupProperty})`);
    },

    queryModifiedSince(entity, since, columns) {
      const { set, key } = dataverseEntitySets[entity];
      // ge, not gt: many rows share one modifiedon second; callers de-dupe by id + versionnumber
      const filter = `modifiedon ge ${since.toISOString().replace(/\.\d{3}Z$/, 'Z')}`;
      const url = `${set}?$select=${selectList(entity, columns)}&$filter=${encodeURIComponent(filter)}&$orderby=modifiedon%20asc,${key}%20asc`;
      return pages(entity, url, `GET ${set}`);
    },

    async *trackChanges(entity, columns, deltaLink) {
      const set = dataverseEntitySets[entity].set;
      const endpoint = deltaLink === undefined ? `GET ${set} (track-changes)` : `GET ${set} (delta)`;
      let url: string | undefined = deltaLink ?? `${set}?$select=${selectList(entity, columns)}`;
      while (url !== undefined) {
        const raw = await call({
          method: 'GET',
          url,
          endpoint,
          headers: { Prefer: `odata.track-changes,odata.maxpagesize=${maxPageSize}` },
        });
        const page = parse(collectionSchema, raw, endpoint);
        const result: DataverseChangePage = { upserts: [], deletedIds: [] };
        for (const row of page.value) {
          const tombstone = tombstoneSchema.safeParse(row);
          if (tombstone.success) result.deletedIds.push(tombstone.data.id);
          else result.upserts.push(toRecord(entity, row, endpoint));
        }
        url = page['@odata.nextLink'];
        if (url === undefined) {
          const next = page['@odata.deltaLink'];
          if (next === undefined) {
            throw new DataversePermanentError(`Change tracking answered without a delta link for ${set}`, { endpoint });
          }
          result.deltaLink = next;
        }
        yield result;
      }
    },

    getAttributes,

    async getColumnAccess(entity) {
      const [attributes, who] = await Promise.all([getAttributes(entity), client.whoAmI()]);
      const raw = await call({
        method: 'GET',
        url: `systemusers(${who.userId})/Microsoft.Dynamics.CRM.RetrievePrincipalAttributePrivileges()`,
        endpoint: 'GET RetrievePrincipalAttributePrivileges',
      });
      const privileges = new Map(
        parse(attributePrivilegesSchema, raw, 'GET RetrievePrincipalAttributePrivileges').AttributePrivileges.map((p) => [
          p.AttributeId.toLowerCase(),
          p,
        ]),
      );
      return attributes.map((a) => {
        const grant = privileges.get(a.metadataId.toLowerCase());
        // field permission values: 0 Not Allowed, 4 Allowed; a secured column without a grant is closed
        const allowed = (v: number | undefined) => !a.isSecured || v === 4;
        return {
          ...a,
          canRead: a.isValidForRead && allowed(grant?.CanRead),
          canCreate: a.isValidForCreate && allowed(grant?.CanCreate),
          canUpdate: a.isValidForUpdate && allowed(grant?.CanUpdate),
        };
      });
    },

    stats() {
      const endpoints: Record<string, DataverseEndpointStats> = {};
      let totalCalls = 0;
      let totalErrors = 0;
      for (const [name, s] of endpointStats) {
        endpoints[name] = { ...s };
        totalCalls += s.calls;
        totalErrors += s.errors;
      }
      const pacing = pacer.stats();
      return {
        endpoints,
        totalCalls,
        totalErrors,
        rateLimitedPauses: pacing.throttled,
        tokenRequests,
        throttled: pacing.throttled,
        throttlingEpisodes: pacing.episodes,
        batches,
        batchOperations,
        batchSize: batchSizer.size(),
      };
    },

    close() {
      return pacer.stop();
    },
  };
  return client;
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

/** Retry-After is seconds (or an HTTP date); returns milliseconds. */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

function withoutKey(values: Record<string, DataverseValue>, key: string): Record<string, DataverseValue> {
  const copy = { ...values };
  delete copy[key];
  return copy;
}

/** OData string literal: single quotes doubled. */
export function quote(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

const guidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function encodeGuid(id: string): string {
  // ids land unquoted in URLs and $filter; anything else would be an injection
  if (!guidPattern.test(id)) throw new DataversePermanentError(`Not a Dataverse id: ${id}`);
  return id.toLowerCase();
}
