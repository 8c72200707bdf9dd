import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { isLookup, type SimAttribute, type SimTable } from './dataverse.metadata.ts';
import {
  DataverseStore,
  SimHttpError,
  type AppliedRewrite,
  type BusinessRule,
  type ColumnGrant,
  type SimChange,
  type SimLookup,
  type SimRecord,
  type ValueRewrite,
  type WriteContext,
} from './dataverse.store.ts';
import { compareKeys, ODataQueryError, parseFilter, parseOrderBy, resolveProperty, sortKey, type OrderBy } from './odata-query.ts';
import { parseBatch, serializeBatchResponse, type BatchRequest, type BatchResponse, type BatchResponsePart } from './dataverse.batch.ts';
import { WebhookEmitter, type WebhookDelivery, type WebhookRegistration } from './webhook.emitter.ts';
import { createDuplicateDetection, type DuplicateRule } from './duplicate-detection.ts';

export type DataverseSimulatorOptions = {
  /** default 0 (random) */
  port?: number;
  host?: string;
  /** the URL clients reach it by, when not http://host:port (a shared sandbox listening on 0.0.0.0) */
  publicUrl?: string;
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** systemuserid of the application user bound to clientId */
  syncUserId?: string;
  /** systemuserid of the human "UI user" that admin edits run as */
  uiUserId?: string;
  /** access token lifetime; default 3599 s like Entra ID */
  tokenLifetimeSeconds?: number;
  /**
   * service protection limits per user (reference §4.2; defaults: 6000 requests and 1,200,000 ms of
   * execution time per 300 s sliding window, 52 concurrent)
   */
  limits?: { requestsPerWindow?: number; windowMs?: number; maxConcurrent?: number; executionMsPerWindow?: number };
  /**
   * time each request takes (held while it occupies a concurrency slot) and the execution time it is
   * charged; default 0. A `$batch` takes `latencyMs` plus `operationMs` per operation.
   */
  latencyMs?: number;
  /** execution time of one operation inside a `$batch`; default 0 */
  operationMs?: number;
  /** longest request URL accepted (414 above it); default 32768. Inside `$batch` a URL may be up to 65536 */
  maxUrlLength?: number;
  /** organization.expirechangetrackingindays; default 7 */
  changeTrackingRetentionDays?: number;
  webhookTimeoutMs?: number;
  /** pause before the single 502/503/504 retry; default 1000 */
  webhookRetryDelayMs?: number;
  organizationName?: string;
  now?: () => number;
  /** used to deliver webhooks */
  fetch?: typeof fetch;
  /** webhook deliveries in flight at once (the async service's workers); default no limit */
  webhookConcurrency?: number;
};

export type SimFault =
  | { kind: 'rate_limit'; count: number; retryAfterSeconds: number; code?: string }
  | { kind: 'server_error'; count: number; status?: 500 | 502 | 503 | 504 }
  | { kind: 'latency'; count: number; ms: number }
  | { kind: 'network'; count: number }
  /**
   * A write that is applied and whose answer is lost: the connection drops (`network`) or a gateway
   * answers 502/504 after the operation committed (reference §4.2: a message can time out at the
   * front end while the server completes it). Taken only by requests that wrote something, single
   * or `$batch`; a request that wrote nothing passes and leaves the fault for the next one.
   */
  | { kind: 'lost_answer'; count: number; answer: 'network' | 502 | 504; batch: boolean };

type LostAnswerFault = Extract<SimFault, { kind: 'lost_answer' }>;

export type EndpointCounter = { calls: number; byStatus: Record<string, number> };

type TokenInfo = { userId: string; expiresAt: number };

const API_PREFIX = /^\/api\/data\/v9\.[0-2]\//;
const GUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
const SUPPORTED_OPTIONS = new Set(['$select', '$filter', '$orderby', '$top', '$skiptoken', '$deltatoken', '$count']);

export type DataverseSimulatorState = ReturnType<typeof createDataverseSimulatorState>;

export function createDataverseSimulatorState(options: DataverseSimulatorOptions = {}) {
  const now = options.now ?? Date.now;
  const config = {
    tenantId: options.tenantId ?? randomUUID(),
    clientId: options.clientId ?? randomUUID(),
    clientSecret: options.clientSecret ?? randomBytes(24).toString('base64url'),
    syncUserId: (options.syncUserId ?? randomUUID()).toLowerCase(),
    uiUserId: (options.uiUserId ?? randomUUID()).toLowerCase(),
    organizationId: randomUUID(),
    businessUnitId: randomUUID(),
    tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 3599,
    limits: {
      requestsPerWindow: options.limits?.requestsPerWindow ?? 6000,
      windowMs: options.limits?.windowMs ?? 300_000,
      maxConcurrent: options.limits?.maxConcurrent ?? 52,
      executionMsPerWindow: options.limits?.executionMsPerWindow ?? 1_200_000,
    },
    timing: { latencyMs: options.latencyMs ?? 0, operationMs: options.operationMs ?? 0 },
    maxUrlLength: options.maxUrlLength ?? 32_768,
    retentionDays: options.changeTrackingRetentionDays ?? 7,
  };
  const state = {
    config,
    now,
    baseUrl: '',
    tokens: new Map<string, TokenInfo>(),
    faults: [] as SimFault[],
    /** lost answers wait for a write (see SimFault), not for the next request */
    lostAnswers: [] as LostAnswerFault[],
    faultListeners: [] as ((fault: SimFault) => void)[],
    writeListeners: [] as ((change: SimChange) => void)[],
    counters: new Map<string, EndpointCounter>(),
    requestLog: new Map<string, number[]>(),
    /** per user: execution time charged, as [start, ms] in admission order */
    executionLog: new Map<string, { at: number; ms: number }[]>(),
    /** while a change set runs, its notifications wait here: they go out only if it commits */
    deferredChanges: undefined as SimChange[] | undefined,
    inFlight: new Map<string, number>(),
    queryCache: new Map<string, { mutations: number; rows: SimRecord[] }>(),
    store: undefined as unknown as DataverseStore,
    webhooks: undefined as unknown as WebhookEmitter,
    /** in-process listeners told of each stored change when its webhooks are (a bench's arrival clock) */
    changeListeners: [] as ((table: string, id: string) => void)[],
    /** duplicate rules, applied to a create that sends MSCRM.SuppressDuplicateDetection: false */
    duplicates: createDuplicateDetection(),
  };
  state.webhooks = new WebhookEmitter({
    organizationId: config.organizationId,
    businessUnitId: config.businessUnitId,
    organizationName: options.organizationName ?? 'SimOrg',
    organizationHost: () => (state.baseUrl ? new URL(state.baseUrl).host : 'localhost'),
    timeoutMs: options.webhookTimeoutMs ?? 60_000,
    ...(options.webhookConcurrency !== undefined ? { concurrency: options.webhookConcurrency } : {}),
    retryDelayMs: options.webhookRetryDelayMs ?? 1000,
    fetch: options.fetch ?? fetch,
  });
  state.store = new DataverseStore(now, (change: SimChange) => {
    if (state.deferredChanges) state.deferredChanges.push(change);
    else tellChange(state, change);
  });
  const system = { userId: config.uiUserId, fullAccess: true };
  state.store.bulkInsert(
    'systemuser',
    [
      {
        systemuserid: config.syncUserId,
        domainname: `# marketo-sync@${config.tenantId.slice(0, 8)}.onmicrosoft.com`,
        firstname: '#',
        lastname: 'Marketo Sync',
        applicationid: config.clientId,
      },
      { systemuserid: config.uiUserId, domainname: 'dana.reyes@contoso.onmicrosoft.com', firstname: 'Dana', lastname: 'Reyes' },
    ],
    system.userId,
  );
  return state;
}

// ---- helpers -------------------------------------------------------------------------------------

function sendError(res: Response, error: SimHttpError): void {
  for (const [k, v] of Object.entries(error.headers)) res.setHeader(k, v);
  res.status(error.status).json({ error: { code: error.code, message: error.message } });
}

function apiBase(state: DataverseSimulatorState, req: Request): string {
  return `${state.baseUrl || `${req.protocol}://${req.get('host') ?? 'localhost'}`}/api/data/v9.2/`;
}

function iso(ms: unknown): string | null {
  return typeof ms === 'number' ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : null;
}

function etagOf(rec: SimRecord): string {
  return `W/"${rec.versionnumber}"`;
}

/** Annotations a `Prefer: odata.include-annotations="..."` asked for: names, or patterns ending in `*`. */
type Annotations = readonly string[];

function wantsAnnotation(annotations: Annotations, name: string): boolean {
  return annotations.some((a) => (a.endsWith('*') ? name.startsWith(a.slice(0, -1)) : a === name));
}

function preferences(req: Request): { maxPageSize?: number; representation: boolean; trackChanges: boolean; continueOnError: boolean; annotations: Annotations } {
  const raw = req.get('prefer') ?? '';
  // the annotation list is quoted and comma-separated: take it out before splitting the preferences
  const quoted = /odata\.include-annotations\s*=\s*"([^"]*)"/i.exec(raw);
  const header = quoted ? raw.replace(quoted[0], '') : raw;
  const out: ReturnType<typeof preferences> = {
    representation: false,
    trackChanges: false,
    continueOnError: false,
    annotations: quoted?.[1] ? quoted[1].split(',').map((a) => a.trim()).filter((a) => a !== '') : [],
  };
  for (const part of header.split(',').map((p) => p.trim())) {
    const m = /^odata\.maxpagesize\s*=\s*(\d+)$/i.exec(part);
    if (m?.[1]) out.maxPageSize = Number(m[1]);
    if (/^return\s*=\s*representation$/i.test(part)) out.representation = true;
    if (/^odata\.track-changes$/i.test(part)) out.trackChanges = true;
    if (/^odata\.continue-on-error$/i.test(part)) out.continueOnError = true;
  }
  return out;
}

/** Path below /api/data/v9.x/, independent of how Express mounted the router. */
function apiPath(req: Request): string {
  const raw = req.originalUrl.split('?')[0] ?? '';
  return decodeURIComponent(raw.replace(API_PREFIX, ''));
}

function queryParams(req: Request): URLSearchParams {
  const q = req.originalUrl.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? req.originalUrl.slice(q + 1) : '');
  for (const key of params.keys()) {
    if (key.startsWith('$') && !SUPPORTED_OPTIONS.has(key)) {
      throw new SimHttpError(400, '0x80060888', `The query parameter '${key}' is not supported.`);
    }
  }
  return params;
}

function parseSelect(t: SimTable, select: string | null): SimAttribute[] | null {
  if (select === null) return null;
  return select.split(',').map((name) => resolveProperty(t, name.trim(), true));
}

/** A row as the Web API serializes it; secured columns the caller cannot read come back null. */
/** The primary name of a row, as a lookup's FormattedValue shows it. */
function primaryName(state: DataverseSimulatorState, ref: SimLookup): string | null {
  const row = state.store.get(ref.logicalName, ref.id);
  const name = row?.values.name ?? row?.values.fullname;
  return typeof name === 'string' ? name : null;
}

function serialize(
  state: DataverseSimulatorState,
  t: SimTable,
  rec: SimRecord,
  select: SimAttribute[] | null,
  ctx: WriteContext,
  annotations: Annotations = [],
): Record<string, unknown> {
  const row: Record<string, unknown> = { '@odata.etag': etagOf(rec) };
  const columns = select ?? [...t.attributes.values()].filter((a) => a.validForRead);
  for (const attr of columns) {
    const name = attr.logicalName;
    const readable = state.store.canRead(t, name, ctx);
    if (isLookup(attr)) {
      const ref = readable ? ((rec.values[name] as SimLookup | null | undefined) ?? null) : null;
      const key = `_${name}_value`;
      row[key] = ref?.id ?? null;
      // annotations come only when asked for, and only on a lookup that holds a value (reference §11)
      if (ref) {
        if (wantsAnnotation(annotations, 'OData.Community.Display.V1.FormattedValue')) row[`${key}@OData.Community.Display.V1.FormattedValue`] = primaryName(state, ref);
        if (wantsAnnotation(annotations, 'Microsoft.Dynamics.CRM.associatednavigationproperty')) {
          const nav = Object.entries(attr.navigation ?? {}).find(([, target]) => target === ref.logicalName)?.[0] ?? name;
          row[`${key}@Microsoft.Dynamics.CRM.associatednavigationproperty`] = attr.type === 'Owner' ? 'ownerid' : nav;
        }
        if (wantsAnnotation(annotations, 'Microsoft.Dynamics.CRM.lookuplogicalname')) row[`${key}@Microsoft.Dynamics.CRM.lookuplogicalname`] = ref.logicalName;
      }
      continue;
    }
    if (attr.type === 'Picklist' && readable && rec.values[name] !== null && rec.values[name] !== undefined && wantsAnnotation(annotations, 'OData.Community.Display.V1.FormattedValue')) {
      row[`${name}@OData.Community.Display.V1.FormattedValue`] = attr.options?.find((o) => o.value === rec.values[name])?.label ?? null;
    }
    let value: unknown;
    if (name === t.primaryKey) value = rec.id;
    else if (name === 'versionnumber') value = rec.versionnumber;
    else if (attr.type === 'DateTime') value = iso(rec.values[name]);
    else value = rec.values[name] ?? null;
    row[name] = readable ? value : null;
  }
  row[t.primaryKey] = rec.id;
  return row;
}

function contextUrl(base: string, t: SimTable, select: SimAttribute[] | null, suffix = ''): string {
  const cols = select ? `(${select.map((a) => (isLookup(a) ? `_${a.logicalName}_value` : a.logicalName)).join(',')})` : '';
  return `${base}$metadata#${t.entitySet}${cols}${suffix}`;
}

function encodeCookie(payload: unknown, page: number, tracking: boolean): string {
  const cookie = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `<cookie pagenumber="${page}" pagingcookie="${cookie}" istracking="${tracking ? 'True' : 'False'}" />`;
}

function decodeCookie(token: string): { page: number; payload: unknown; tracking: boolean } {
  const m = /^<cookie pagenumber="(\d+)" pagingcookie="([A-Za-z0-9_-]+)" istracking="(True|False)" \/>$/.exec(token);
  if (!m?.[1] || !m[2]) throw new SimHttpError(400, '0x80060888', 'The $skiptoken value is not valid. Follow @odata.nextLink without changing it.');
  try {
    return { page: Number(m[1]), payload: JSON.parse(Buffer.from(m[2], 'base64url').toString()) as unknown, tracking: m[3] === 'True' };
  } catch {
    throw new SimHttpError(400, '0x80060888', 'The $skiptoken value is not valid. Follow @odata.nextLink without changing it.');
  }
}

function nextLink(base: string, set: string, params: URLSearchParams, skiptoken: string): string {
  const parts: string[] = [];
  for (const [k, v] of params) if (k !== '$skiptoken') parts.push(`${k}=${encodeURIComponent(v)}`);
  parts.push(`$skiptoken=${encodeURIComponent(skiptoken)}`);
  return `${base}${set}?${parts.join('&')}`;
}

function deltaTokenFor(version: number, at: number): string {
  const d = new Date(at);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${version}!${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

const expiredStamp = () =>
  new SimHttpError(400, '0x80044352', 'Version stamp associated with the client has expired. Please perform a full sync.');

// ---- queries -------------------------------------------------------------------------------------

function sortedRows(state: DataverseSimulatorState, t: SimTable, filterText: string | null, order: OrderBy, orderText: string): SimRecord[] {
  const key = `${t.logicalName}|${filterText ?? ''}|${orderText}`;
  const cached = state.queryCache.get(key);
  if (cached && cached.mutations === state.store.mutations) return cached.rows;
  const predicate = filterText === null ? () => true : parseFilter(t, filterText);
  const rows: { rec: SimRecord; key: unknown[] }[] = [];
  for (const rec of state.store.rows(t.logicalName).values()) {
    if (predicate(rec)) rows.push({ rec, key: sortKey(t, order, rec) });
  }
  rows.sort((a, b) => compareKeys(order, a.key, b.key));
  const result = rows.map((r) => r.rec);
  if (state.queryCache.size >= 8) state.queryCache.delete(state.queryCache.keys().next().value!);
  state.queryCache.set(key, { mutations: state.store.mutations, rows: result });
  return result;
}

function firstAfter(t: SimTable, order: OrderBy, rows: SimRecord[], last: unknown[]): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareKeys(order, sortKey(t, order, rows[mid]!), last) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function pageSizeOf(prefs: { maxPageSize?: number }): number {
  const n = prefs.maxPageSize;
  return n !== undefined && n > 0 ? Math.min(n, 5000) : 5000;
}

function queryCollection(state: DataverseSimulatorState, req: Request, res: Response, t: SimTable, ctx: WriteContext): void {
  const params = queryParams(req);
  const prefs = preferences(req);
  const base = apiBase(state, req);
  const select = parseSelect(t, params.get('$select'));
  const skiptoken = params.get('$skiptoken');
  const cookie = skiptoken === null ? undefined : decodeCookie(skiptoken);
  const deltatoken = params.get('$deltatoken');
  if (prefs.trackChanges || deltatoken !== null || cookie?.tracking) {
    for (const option of ['$filter', '$orderby', '$expand', '$top']) {
      if (params.has(option)) {
        throw new SimHttpError(400, '0x80060888', `The "${option}" query parameter isn't supported when Change Tracking is enabled.`);
      }
    }
    if (!state.store.changeTrackingEnabled.get(t.logicalName)) {
      throw new SimHttpError(400, '0x80044351', `Entity '${t.logicalName}' is not enabled for change tracking.`);
    }
    trackChanges(state, req, res, t, ctx, { params, prefs, base, select, cookie, deltatoken });
    return;
  }
  const filterText = params.get('$filter');
  const orderText = params.get('$orderby');
  const order = parseOrderBy(t, orderText ?? undefined);
  const rows = sortedRows(state, t, filterText, order, orderText ?? '');
  const topText = params.get('$top');
  let pageSize = pageSizeOf(prefs);
  let paged = true;
  if (topText !== null && prefs.maxPageSize === undefined) {
    const top = Number(topText);
    if (!Number.isInteger(top) || top < 0 || top > 5000) {
      throw new SimHttpError(400, '0x80060888', `Invalid value '${topText}' for $top query option: must be an integer between 0 and 5000.`);
    }
    // $top ends the result; it is ignored when odata.maxpagesize is present (reference §2.3)
    pageSize = top;
    paged = false;
  }
  let start = 0;
  let pageNumber = 1;
  if (cookie) {
    const last = (cookie.payload as { k?: unknown }).k;
    if (!Array.isArray(last) || last.length !== order.length) {
      throw new SimHttpError(400, '0x80060888', 'The $skiptoken value is not valid. Follow @odata.nextLink without changing it.');
    }
    start = firstAfter(t, order, rows, last);
    pageNumber = cookie.page;
  }
  const page = rows.slice(start, start + pageSize);
  const body: Record<string, unknown> = { '@odata.context': contextUrl(base, t, select) };
  if (params.get('$count') === 'true') body['@odata.count'] = Math.min(rows.length, 5000);
  body.value = page.map((rec) => serialize(state, t, rec, select, ctx, prefs.annotations));
  const lastRow = page.at(-1);
  if (paged && lastRow && start + pageSize < rows.length) {
    body['@odata.nextLink'] = nextLink(base, t.entitySet, params, encodeCookie({ k: sortKey(t, order, lastRow) }, pageNumber + 1, false));
  }
  if (prefs.maxPageSize !== undefined) res.setHeader('Preference-Applied', `odata.maxpagesize=${pageSize}`);
  res.status(200).json(body);
}

function trackChanges(
  state: DataverseSimulatorState,
  req: Request,
  res: Response,
  t: SimTable,
  ctx: WriteContext,
  q: {
    params: URLSearchParams;
    prefs: ReturnType<typeof preferences>;
    base: string;
    select: SimAttribute[] | null;
    cookie: ReturnType<typeof decodeCookie> | undefined;
    deltatoken: string | null;
  },
): void {
  const store = state.store;
  const pageSize = pageSizeOf(q.prefs);
  const body: Record<string, unknown> = {};
  const deltaLink = (version: number) => {
    const parts: string[] = [];
    for (const [k, v] of q.params) if (k !== '$skiptoken' && k !== '$deltatoken') parts.push(`${k}=${encodeURIComponent(v)}`);
    parts.push(`$deltatoken=${encodeURIComponent(deltaTokenFor(version, state.now()))}`);
    return `${q.base}${t.entitySet}?${parts.join('&')}`;
  };
  if (q.deltatoken === null) {
    // Initial load: every current row, paged by id. The token is minted when the last page is served,
    // so rows changed during a long initial load can be missed, exactly as the platform does (issue #3862).
    const order = parseOrderBy(t, undefined);
    const rows = sortedRows(state, t, null, order, '');
    let start = 0;
    if (q.cookie) {
      const last = (q.cookie.payload as { k?: unknown }).k;
      if (!Array.isArray(last) || last.length !== order.length) throw new SimHttpError(400, '0x80060888', 'The $skiptoken value is not valid.');
      start = firstAfter(t, order, rows, last);
    }
    const page = rows.slice(start, start + pageSize);
    body['@odata.context'] = contextUrl(q.base, t, q.select);
    body.value = page.map((rec) => serialize(state, t, rec, q.select, ctx, q.prefs.annotations));
    const lastRow = page.at(-1);
    if (lastRow && start + pageSize < rows.length) {
      body['@odata.nextLink'] = nextLink(q.base, t.entitySet, q.params, encodeCookie({ k: sortKey(t, order, lastRow) }, (q.cookie?.page ?? 1) + 1, true));
    } else {
      body['@odata.deltaLink'] = deltaLink(store.version);
    }
  } else {
    const m = /^(\d+)!(\d{2})\/(\d{2})\/(\d{4}) (\d{2}):(\d{2}):(\d{2})$/.exec(q.deltatoken);
    if (!m) throw expiredStamp();
    const since = Number(m[1]);
    const mintedAt = Date.UTC(Number(m[4]), Number(m[2]) - 1, Number(m[3]), Number(m[5]), Number(m[6]), Number(m[7]));
    const floor = store.deltaFloor.get(t.logicalName) ?? 0;
    if (since > store.version || since < floor || state.now() - mintedAt > state.config.retentionDays * 86_400_000) {
      throw expiredStamp();
    }
    let upTo = store.version;
    let offset = 0;
    if (q.cookie) {
      const p = q.cookie.payload as { upTo?: unknown; offset?: unknown };
      if (typeof p.upTo !== 'number' || typeof p.offset !== 'number') throw new SimHttpError(400, '0x80060888', 'The $skiptoken value is not valid.');
      upTo = p.upTo;
      offset = p.offset;
    }
    const changes = store.changesBetween(t.logicalName, since, upTo);
    const tombstoneContext = `${q.base}$metadata#${t.entitySet}/$deletedEntity`;
    const all = [
      ...changes.upserts.map((rec) => ({ rec })),
      ...changes.deleted.map((id) => ({ id })),
    ];
    const page = all.slice(offset, offset + pageSize);
    body['@odata.context'] = contextUrl(q.base, t, q.select, '/$delta');
    body.value = page.map((item) =>
      'rec' in item ? serialize(state, t, item.rec, q.select, ctx, q.prefs.annotations) : { '@odata.context': tombstoneContext, id: item.id, reason: 'deleted' },
    );
    if (offset + pageSize < all.length) {
      const params = new URLSearchParams(q.params);
      body['@odata.nextLink'] = nextLink(q.base, t.entitySet, params, encodeCookie({ upTo, offset: offset + pageSize }, (q.cookie?.page ?? 1) + 1, true));
    } else {
      body['@odata.deltaLink'] = deltaLink(upTo);
    }
  }
  res.setHeader('Preference-Applied', q.prefs.maxPageSize === undefined ? 'odata.track-changes' : `odata.track-changes,odata.maxpagesize=${pageSize}`);
  res.status(200).json(body);
}

// ---- rows ----------------------------------------------------------------------------------------

function checkIfMatch(req: Request, rec: SimRecord | undefined, table: string, id: string): void {
  const ifMatch = req.get('if-match');
  if (ifMatch === undefined) return;
  if (!rec) throw new SimHttpError(404, '0x80040217', `${table} With Id = ${id} Does Not Exist`);
  if (ifMatch !== '*' && ifMatch !== etagOf(rec)) {
    throw new SimHttpError(412, '0x80060882', "The version of the existing record doesn't match the RowVersion property provided.");
  }
}

function writeResponse(state: DataverseSimulatorState, req: Request, res: Response, t: SimTable, rec: SimRecord, created: boolean, ctx: WriteContext): void {
  const base = apiBase(state, req);
  if (preferences(req).representation) {
    const select = parseSelect(t, queryParams(req).get('$select'));
    res.setHeader('ETag', etagOf(rec));
    res.status(created ? 201 : 200).json({ '@odata.context': contextUrl(base, t, select, '/$entity'), ...serialize(state, t, rec, select, ctx, preferences(req).annotations) });
    return;
  }
  res.setHeader('OData-EntityId', `${base}${t.entitySet}(${rec.id})`);
  res.status(204).end();
}

function requireJsonBody(req: Request): Record<string, unknown> {
  if (!req.is('application/json')) {
    throw new SimHttpError(415, '0x80048d19', "The request contains an entity body but no 'Content-Type: application/json' header.");
  }
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new SimHttpError(400, '0x80048d19', 'Error identified in Payload provided by the user: a JSON object was expected.');
  }
  return body as Record<string, unknown>;
}

function handleApi(state: DataverseSimulatorState, req: Request, res: Response, ctx: WriteContext): string {
  const store = state.store;
  const path = apiPath(req);
  const method = req.method;
  const base = apiBase(state, req);

  if (/^WhoAmI(\(\))?$/.test(path)) {
    if (method !== 'GET') throw new SimHttpError(405, '0x80060888', 'The HTTP verb is not supported for WhoAmI.');
    res.status(200).json({
      '@odata.context': `${base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse`,
      BusinessUnitId: state.config.businessUnitId,
      UserId: ctx.userId,
      OrganizationId: state.config.organizationId,
    });
    return 'WhoAmI';
  }

  const meta = /^EntityDefinitions\(LogicalName='([a-z_]+)'\)\/Attributes(?:\/Microsoft\.Dynamics\.CRM\.(\w+))?$/.exec(path);
  if (meta?.[1]) {
    const t = store.tables.get(meta[1]);
    if (!t) throw new SimHttpError(404, '0x80040217', `Could not find entity with name '${meta[1]}'.`);
    const cast = meta[2];
    const castTypes: Record<string, SimAttribute['type'][]> = {
      PicklistAttributeMetadata: ['Picklist'],
      StateAttributeMetadata: ['State'],
      StatusAttributeMetadata: ['Status'],
      BooleanAttributeMetadata: ['Boolean'],
    };
    if (cast !== undefined && !castTypes[cast]) throw new SimHttpError(400, '0x80060888', `Unknown type cast 'Microsoft.Dynamics.CRM.${cast}'.`);
    const attrs = [...t.attributes.values()].filter((a) => cast === undefined || castTypes[cast]!.includes(a.type));
    const label = (text: string) => ({ UserLocalizedLabel: { Label: text, LanguageCode: 1033 }, LocalizedLabels: [{ Label: text, LanguageCode: 1033 }] });
    res.status(200).json({
      '@odata.context': `${base}$metadata#EntityDefinitions('${t.logicalName}')/Attributes`,
      value: attrs.map((a) => {
        const row: Record<string, unknown> = {
          '@odata.type': `#Microsoft.Dynamics.CRM.${a.type === 'Uniqueidentifier' ? 'UniqueIdentifier' : a.type}AttributeMetadata`,
          LogicalName: a.logicalName,
          SchemaName: a.logicalName,
          MetadataId: a.metadataId,
          AttributeType: a.type,
          DisplayName: label(a.displayName),
          IsSecured: store.securedColumns.has(`${t.logicalName}.${a.logicalName}`),
          IsValidForRead: a.validForRead,
          IsValidForCreate: a.validForCreate,
          IsValidForUpdate: a.validForUpdate,
          RequiredLevel: { Value: a.requiredLevel, CanBeChanged: true },
          AttributeOf: null,
        };
        if (a.maxLength !== undefined) row.MaxLength = a.maxLength;
        if (cast !== undefined && a.options) {
          row.OptionSet =
            a.type === 'Boolean'
              ? { FalseOption: { Value: 0, Label: label(a.options[0]!.label) }, TrueOption: { Value: 1, Label: label(a.options[1]!.label) } }
              : { Options: a.options.map((o) => ({ Value: o.value, Label: label(o.label), ...(o.state === undefined ? {} : { State: o.state }) })) };
        }
        return row;
      }),
    });
    return `EntityDefinitions/Attributes${cast ? `/${cast}` : ''}`;
  }

  const privileges = new RegExp(`^systemusers\\((${GUID})\\)/Microsoft\\.Dynamics\\.CRM\\.RetrievePrincipalAttributePrivileges(\\(\\))?$`).exec(path);
  if (privileges?.[1]) {
    const userId = privileges[1].toLowerCase();
    if (!store.get('systemuser', userId)) throw store.notFound('systemuser', userId);
    const list: Record<string, unknown>[] = [];
    for (const [key, grant] of store.securedColumns) {
      const [tableName, column] = key.split('.') as [string, string];
      const attr = store.tables.get(tableName)?.attributes.get(column);
      if (!attr) continue;
      // the app user holds only the configured grants; others (UI users here) are administrators
      const g: ColumnGrant = userId === state.config.syncUserId ? grant : { read: true, create: true, update: true };
      if (!g.read && !g.create && !g.update) continue;
      list.push({ AttributeId: attr.metadataId, CanCreate: g.create ? 4 : 0, CanRead: g.read ? 4 : 0, CanUpdate: g.update ? 4 : 0, CanReadUnMasked: 0 });
    }
    res.status(200).json({ '@odata.context': `${base}$metadata#Microsoft.Dynamics.CRM.RetrievePrincipalAttributePrivilegesResponse`, AttributePrivileges: list });
    return 'RetrievePrincipalAttributePrivileges';
  }

  if (path === 'Merge') {
    if (method !== 'POST') throw new SimHttpError(405, '0x80060888', 'Merge is an action: use POST.');
    const body = requireJsonBody(req);
    const entityParam = (name: string, required: boolean): { table: SimTable; values: Record<string, unknown> } | null => {
      const value = body[name];
      if (value === undefined || value === null) {
        if (required) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: the parameter '${name}' is required.`);
        return null;
      }
      if (typeof value !== 'object' || Array.isArray(value)) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: '${name}' must be an entity.`);
      const typed = (value as Record<string, unknown>)['@odata.type'];
      // crmbaseentity parameters must say their type (reference dataverse §13)
      const m = typeof typed === 'string' ? /^#?Microsoft\.Dynamics\.CRM\.([a-z_]+)$/.exec(typed) : null;
      const table = m?.[1] ? store.tables.get(m[1]) : undefined;
      if (!table) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: '${name}' needs an '@odata.type' naming its table.`);
      return { table, values: value as Record<string, unknown> };
    };
    const target = entityParam('Target', true)!;
    const subordinate = entityParam('Subordinate', true)!;
    const content = entityParam('UpdateContent', false);
    if (typeof body.PerformParentingChecks !== 'boolean') {
      throw new SimHttpError(400, '0x80048d19', "Error identified in Payload provided by the user: the parameter 'PerformParentingChecks' is required.");
    }
    if (target.table !== subordinate.table || (content && content.table !== target.table)) {
      throw new SimHttpError(400, '0x80040203', 'The records to merge must be of the same entity type.');
    }
    const idOf = (p: { table: SimTable; values: Record<string, unknown> }, name: string) => {
      const id = p.values[p.table.primaryKey];
      if (typeof id !== 'string' || !new RegExp(`^${GUID}$`).test(id)) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: '${name}' needs its ${p.table.primaryKey}.`);
      return id.toLowerCase();
    };
    const updateContent: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(content?.values ?? {})) if (!k.startsWith('@odata.') && k !== target.table.primaryKey) updateContent[k] = v;
    store.merge(target.table.logicalName, idOf(target, 'Target'), idOf(subordinate, 'Subordinate'), updateContent, body.PerformParentingChecks, ctx);
    res.status(204).end();
    return 'Merge';
  }

  const qualify = new RegExp(`^leads\\((${GUID})\\)/Microsoft\\.Dynamics\\.CRM\\.QualifyLead$`).exec(path);
  if (qualify?.[1]) {
    if (method !== 'POST') throw new SimHttpError(405, '0x80060888', 'QualifyLead is an action: use POST.');
    const body = requireJsonBody(req);
    if (body.CreateContact !== true) throw new SimHttpError(400, '0x80040203', 'The simulator qualifies leads into contacts only: send CreateContact: true.');
    const contact = store.qualifyLead(qualify[1], ctx);
    res.status(200).json({
      '@odata.context': `${base}$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)`,
      value: [{ '@odata.type': '#Microsoft.Dynamics.CRM.contact', contactid: contact.id }],
    });
    return 'QualifyLead';
  }

  const single = new RegExp(`^([a-z_]+)\\((${GUID})\\)$`).exec(path);
  const collection = /^([a-z_]+)$/.exec(path);
  const set = single?.[1] ?? collection?.[1];
  const t = set === undefined ? undefined : store.tableBySet(set);
  if (!t) {
    const keyed = /^([a-z_]+)\((.*)\)$/.exec(path);
    if (keyed?.[1] && store.tableBySet(keyed[1])) {
      throw new SimHttpError(400, '0x80060888', `The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.${store.tableBySet(keyed[1])!.logicalName}'. Ensure that the names and number of key properties match the declared or alternate key properties for the resource.`);
    }
    throw new SimHttpError(404, '0x8006088a', `Resource not found for the segment '${path.split(/[/(]/)[0] ?? path}'.`);
  }
  if (!t.writable && method !== 'GET') throw new SimHttpError(405, '0x80060888', `The HTTP verb ${method} is not supported for ${t.entitySet} by this simulator.`);

  if (collection) {
    if (method === 'GET') {
      queryCollection(state, req, res, t, ctx);
      return `${t.entitySet}`;
    }
    if (method === 'POST') {
      const body = requireJsonBody(req);
      state.duplicates.check(store, t.logicalName, body, req.get('mscrm.suppressduplicatedetection'));
      const rec = store.create(t.logicalName, body, ctx);
      writeResponse(state, req, res, t, rec, true, ctx);
      return `${t.entitySet}`;
    }
    throw new SimHttpError(405, '0x80060888', `The HTTP verb ${method} is not allowed on a collection.`);
  }

  const id = single![2]!.toLowerCase();
  const rec = store.get(t.logicalName, id);
  const endpoint = `${t.entitySet}(id)`;
  switch (method) {
    case 'GET': {
      if (!rec) throw store.notFound(t.logicalName, id);
      const select = parseSelect(t, queryParams(req).get('$select'));
      res.setHeader('ETag', etagOf(rec));
      if (req.get('if-none-match') === etagOf(rec)) {
        res.status(304).end();
        return endpoint;
      }
      res.status(200).json({ '@odata.context': contextUrl(base, t, select, '/$entity'), ...serialize(state, t, rec, select, ctx, preferences(req).annotations) });
      return endpoint;
    }
    case 'PATCH': {
      const body = requireJsonBody(req);
      checkIfMatch(req, rec, t.logicalName, id);
      if (req.get('if-none-match') === '*' && rec) {
        throw new SimHttpError(412, '0x80040237', 'A record with matching key values already exists.');
      }
      if (!rec) {
        // PATCH without If-Match is an upsert
        const created = store.create(t.logicalName, { ...body, [t.primaryKey]: id }, ctx);
        writeResponse(state, req, res, t, created, true, ctx);
        return endpoint;
      }
      const updated = store.update(t.logicalName, id, body, ctx);
      writeResponse(state, req, res, t, updated, false, ctx);
      return endpoint;
    }
    case 'DELETE': {
      if (!rec) throw store.notFound(t.logicalName, id);
      checkIfMatch(req, rec, t.logicalName, id);
      store.delete(t.logicalName, id, ctx);
      res.status(204).end();
      return endpoint;
    }
    default:
      throw new SimHttpError(405, '0x80060888', `The HTTP verb ${method} is not supported.`);
  }
}

// ---- service protection and $batch ---------------------------------------------------------------

function isBatch(req: Request): boolean {
  return apiPath(req) === '$batch';
}

/**
 * Service protection per user (reference §4.2): concurrency is refused at once; the request count
 * and the execution time are measured over a sliding window. Admitted requests carry the
 * x-ms-ratelimit-* headers of what is left. Returns the 429 to send, or nothing when admitted.
 */
function admit(state: DataverseSimulatorState, userId: string, res: Response): SimHttpError | undefined {
  const { limits, timing } = state.config;
  const nowMs = state.now();
  const log = state.requestLog.get(userId) ?? [];
  while (log.length > 0 && log[0]! <= nowMs - limits.windowMs) log.shift();
  const executions = state.executionLog.get(userId) ?? [];
  while (executions.length > 0 && executions[0]!.at <= nowMs - limits.windowMs) executions.shift();
  const executed = executions.reduce((sum, e) => sum + e.ms, 0);
  const active = state.inFlight.get(userId) ?? 0;
  if (active >= limits.maxConcurrent) {
    return new SimHttpError(429, '0x80072326', `Number of concurrent requests exceeded the limit of ${limits.maxConcurrent}.`, { 'Retry-After': '1' });
  }
  if (log.length >= limits.requestsPerWindow) {
    const retry = Math.max(1, Math.ceil((log[0]! + limits.windowMs - nowMs) / 1000));
    return new SimHttpError(
      429,
      '0x80072322',
      `Number of requests exceeded the limit of ${limits.requestsPerWindow} over time window of ${limits.windowMs / 1000} seconds.`,
      { 'Retry-After': String(retry) },
    );
  }
  if (executed >= limits.executionMsPerWindow) {
    // until enough of the window's oldest execution time has slid out
    let freed = 0;
    let until = nowMs;
    for (const e of executions) {
      freed += e.ms;
      until = e.at + limits.windowMs;
      if (executed - freed < limits.executionMsPerWindow) break;
    }
    return new SimHttpError(
      429,
      '0x80072321',
      `Combined execution time of incoming requests exceeded limit of ${limits.executionMsPerWindow.toLocaleString('en-US')} milliseconds over time window of ${limits.windowMs / 1000} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.`,
      { 'Retry-After': String(Math.max(1, Math.ceil((until - nowMs) / 1000))) },
    );
  }
  log.push(nowMs);
  state.requestLog.set(userId, log);
  executions.push({ at: nowMs, ms: timing.latencyMs });
  state.executionLog.set(userId, executions);
  state.inFlight.set(userId, active + 1);
  res.setHeader('x-ms-ratelimit-burst-remaining-xrm-requests', String(limits.requestsPerWindow - log.length));
  res.setHeader('x-ms-ratelimit-time-remaining-xrm-requests', (limits.executionMsPerWindow - executed - timing.latencyMs).toFixed(2));
  return undefined;
}

/** A request of a batch as the handlers expect it: headers, URL and JSON body of the part. */
function innerRequest(method: string, pathAndQuery: string, headers: Map<string, string>, body: unknown): Request {
  const fake = {
    method,
    originalUrl: pathAndQuery,
    body,
    protocol: 'http',
    get: (name: string) => headers.get(name.toLowerCase()),
    is: (type: string) => (/^application\/json/i.test(headers.get('content-type') ?? '') ? type : false),
  };
  return fake as unknown as Request;
}

/** Collects what a handler answers, for one part of the batch response. */
function innerResponse() {
  const out = { status: 200, headers: {} as Record<string, string>, body: undefined as string | undefined };
  const res = {
    locals: {},
    setHeader(name: string, value: string) {
      out.headers[name] = value;
      return res;
    },
    status(code: number) {
      out.status = code;
      return res;
    },
    json(value: unknown) {
      out.headers['Content-Type'] = 'application/json; odata.metadata=minimal';
      out.headers['OData-Version'] = '4.0';
      out.body = JSON.stringify(value);
      return res;
    },
    end() {
      return res;
    },
  };
  return { out, res: res as unknown as Response };
}

function errorResponse(error: unknown): BatchResponse {
  const e =
    error instanceof SimHttpError
      ? error
      : error instanceof ODataQueryError
        ? new SimHttpError(400, error.code, error.message)
        : new SimHttpError(500, '0x80040216', error instanceof Error ? error.message : String(error));
  return {
    status: e.status,
    headers: { 'Content-Type': 'application/json; odata.metadata=minimal', 'OData-Version': '4.0', ...e.headers },
    body: JSON.stringify({ error: { code: e.code, message: e.message } }),
  };
}

const MAX_BATCH_URL = 65_536;

/** Runs one operation of a batch; `$n` in its URL or an @odata.bind value names an earlier Content-ID. */
function runOperation(state: DataverseSimulatorState, op: BatchRequest, ctx: WriteContext, ids: Map<string, string>): BatchResponse {
  const resolveRef = (value: string) => value.replace(/^\$(\w+)/, (whole, id: string) => {
    const target = ids.get(id);
    if (target === undefined) throw new SimHttpError(400, '0x80060888', `Content-ID Reference: '${whole}' does not exist in the batch context.`);
    return target;
  });
  try {
    if (op.url.length > MAX_BATCH_URL) throw new SimHttpError(414, '0x8006088e', `The request URL is longer than ${MAX_BATCH_URL} characters.`);
    let url = resolveRef(op.url);
    if (/^https?:\/\//i.test(url)) url = url.replace(/^https?:\/\/[^/]+/i, '');
    if (!url.startsWith('/')) url = `/api/data/v9.2/${url}`;
    if (!API_PREFIX.test(url)) throw new SimHttpError(404, '0x8006088a', `Resource not found for the segment '${url}'.`);
    let body: unknown;
    if (op.body !== '') {
      try {
        body = JSON.parse(op.body) as unknown;
      } catch (cause) {
        throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: the body is not valid JSON (${cause instanceof Error ? cause.message : ''}).`);
      }
      if (typeof body === 'object' && body !== null) {
        for (const [k, v] of Object.entries(body)) {
          if (k.endsWith('@odata.bind') && typeof v === 'string' && v.startsWith('$')) (body as Record<string, unknown>)[k] = resolveRef(v);
        }
      }
    }
    const { out, res } = innerResponse();
    handleApi(state, innerRequest(op.method, url, op.headers, body), res, ctx);
    const location = out.headers['OData-EntityId'] ?? (out.body && out.status === 201 ? createdUrl(state, url, out.body) : undefined);
    if (op.contentId !== undefined && location !== undefined) ids.set(op.contentId, location);
    return { ...out, contentId: op.contentId };
  } catch (error) {
    return { ...errorResponse(error), contentId: op.contentId };
  }
}

function createdUrl(state: DataverseSimulatorState, url: string, body: string): string | undefined {
  const set = /^\/api\/data\/v9\.[0-2]\/([a-z_]+)/.exec(url)?.[1];
  const t = set === undefined ? undefined : state.store.tableBySet(set);
  const id = t ? (JSON.parse(body) as Record<string, unknown>)[t.primaryKey] : undefined;
  return t && typeof id === 'string' ? `${state.baseUrl}/api/data/v9.2/${t.entitySet}(${id})` : undefined;
}

/** A change set commits together: on the first failure the rows it touched go back as they were. */
/** A change is told (webhooks, in-process listeners) once it is stored: at once, or when its change set commits. */
function tellChange(state: DataverseSimulatorState, change: SimChange): void {
  state.webhooks.notify(change);
  for (const listener of state.changeListeners) listener(change.table.logicalName, change.id);
  for (const listener of state.writeListeners) listener(change);
}

function runChangeSet(state: DataverseSimulatorState, ops: BatchRequest[], ctx: WriteContext): BatchResponsePart {
  const store = state.store;
  const touched = new Map<string, { table: string; id: string; before: SimRecord | undefined; values?: Record<string, unknown>; version?: number }>();
  const remember = (op: BatchRequest) => {
    const m = new RegExp(`/([a-z_]+)\\((${GUID})\\)`).exec(op.url);
    const t = m?.[1] ? store.tableBySet(m[1]) : undefined;
    if (!t || !m?.[2]) return;
    const id = m[2].toLowerCase();
    const key = `${t.logicalName}:${id}`;
    if (touched.has(key)) return;
    const rec = store.get(t.logicalName, id);
    touched.set(key, { table: t.logicalName, id, before: rec, ...(rec ? { values: { ...rec.values }, version: rec.versionnumber } : {}) });
  };
  const ids = new Map<string, string>();
  const responses: BatchResponse[] = [];
  const rowsBefore = new Map([...store.records].map(([table, rows]) => [table, new Set(rows.keys())]));
  state.deferredChanges = [];
  try {
    for (const op of ops) {
      remember(op);
      const response = runOperation(state, op, ctx, ids);
      if (response.status >= 400) {
        // roll back: rows created go, rows changed or deleted come back as they were
        for (const [table, rows] of store.records) {
          const before = rowsBefore.get(table)!;
          for (const id of [...rows.keys()]) if (!before.has(id)) rows.delete(id);
        }
        for (const t of touched.values()) {
          if (!t.before) continue;
          t.before.values = t.values!;
          t.before.versionnumber = t.version!;
          store.rows(t.table).set(t.id, t.before);
        }
        store.mutations += 1;
        state.deferredChanges = undefined;
        return { kind: 'response', response };
      }
      responses.push(response);
    }
    const changes = state.deferredChanges;
    state.deferredChanges = undefined;
    for (const change of changes) tellChange(state, change);
    return { kind: 'changeset', responses };
  } finally {
    state.deferredChanges = undefined;
  }
}

/**
 * POST $batch (reference §2.7): parts run in order; without `odata.continue-on-error` the first
 * failure stops the batch and the answer is a 400 holding that failure alone. The batch counted as
 * one request at admission; each operation's execution time is charged to the window here.
 */
async function runBatch(state: DataverseSimulatorState, req: Request, res: Response, ctx: WriteContext): Promise<void> {
  if (req.method !== 'POST') throw new SimHttpError(405, '0x80060888', 'The HTTP verb is not supported for $batch: use POST.');
  const parts = parseBatch(typeof req.body === 'string' ? req.body : '', req.get('content-type'));
  const operations = parts.reduce((n, p) => n + (p.kind === 'changeset' ? p.requests.length : 1), 0);
  const executionMs = operations * state.config.timing.operationMs;
  if (executionMs > 0) {
    const log = state.executionLog.get(ctx.userId) ?? [];
    log.push({ at: state.now(), ms: executionMs });
    state.executionLog.set(ctx.userId, log);
  }
  const delay = state.config.timing.latencyMs + executionMs;
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  const continueOnError = preferences(req).continueOnError;
  const answered: BatchResponsePart[] = [];
  const ids = new Map<string, string>();
  for (const part of parts) {
    const result: BatchResponsePart =
      part.kind === 'changeset' ? runChangeSet(state, part.requests, ctx) : { kind: 'response', response: runOperation(state, part.request, ctx, ids) };
    const failed = result.kind === 'response' && result.response.status >= 400;
    if (failed && !continueOnError) {
      const { contentType, body } = serializeBatchResponse([result]);
      res.status(400).setHeader('Content-Type', contentType);
      res.send(body);
      return;
    }
    answered.push(result);
  }
  const { contentType, body } = serializeBatchResponse(answered);
  if (continueOnError) res.setHeader('Preference-Applied', 'odata.continue-on-error');
  res.status(200).setHeader('Content-Type', contentType);
  res.send(body);
}

/**
 * Arms a pending lost-answer fault on this request: when its answer is about to go out and the
 * request wrote something (the store's mutation count moved) with a success status, the answer is
 * replaced by a dropped connection or a gateway error. The write itself stays applied.
 */
function loseAnswerIfWritten(state: DataverseSimulatorState, req: Request, res: Response): void {
  if (req.method === 'GET') return;
  const batch = isBatch(req);
  const fault = state.lostAnswers.find((f) => f.batch === batch);
  if (!fault) return;
  const mutationsBefore = state.store.mutations;
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  res.end = ((...args: unknown[]) => {
    const wrote = state.store.mutations !== mutationsBefore && res.statusCode < 400;
    if (!wrote || fault.count <= 0) return end(...args);
    fault.count -= 1;
    if (fault.count <= 0) state.lostAnswers.splice(state.lostAnswers.indexOf(fault), 1);
    for (const listener of state.faultListeners) listener(fault);
    if (fault.answer === 'network') {
      req.socket.destroy();
      return res;
    }
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.statusCode = fault.answer;
    res.setHeader('Content-Type', 'text/html');
    return end(`<html><body><h1>${fault.answer} ${fault.answer === 502 ? 'Bad Gateway' : 'Gateway Timeout'}</h1></body></html>`);
  }) as typeof res.end;
}

// ---- app -----------------------------------------------------------------------------------------

export function createDataverseSimulatorApp(state: DataverseSimulatorState): express.Express {
  const app = express();
  app.disable('x-powered-by');
  const { config } = state;
  const count = (endpoint: string, status: number) => {
    let c = state.counters.get(endpoint);
    if (!c) {
      c = { calls: 0, byStatus: {} };
      state.counters.set(endpoint, c);
    }
    c.calls += 1;
    c.byStatus[status] = (c.byStatus[status] ?? 0) + 1;
  };
  const aadError = (res: Response, status: number, error: string, code: number, description: string) => {
    const traceId = randomUUID();
    const correlationId = randomUUID();
    const timestamp = new Date(state.now()).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    res.status(status).json({
      error,
      error_description: `AADSTS${code}: ${description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
      error_codes: [code],
      timestamp,
      trace_id: traceId,
      correlation_id: correlationId,
      error_uri: `https://login.microsoftonline.com/error?code=${code}`,
    });
  };

  // ---- token endpoint (Entra ID v2, client credentials) ----
  app.post('/:tenant/oauth2/v2.0/token', express.urlencoded({ extended: false }), (req: Request, res: Response) => {
    const tenant = String(req.params.tenant);
    res.on('finish', () => count('POST token', res.statusCode));
    if (tenant !== config.tenantId) {
      aadError(res, 400, 'invalid_request', 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
      return;
    }
    if (!req.is('application/x-www-form-urlencoded')) {
      aadError(res, 400, 'invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'.");
      return;
    }
    const body = (req.body ?? {}) as Record<string, string | undefined>;
    if (body.grant_type !== 'client_credentials') {
      aadError(res, 400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${body.grant_type ?? ''}'.`);
      return;
    }
    if (body.client_id !== config.clientId) {
      aadError(res, 400, 'unauthorized_client', 700016, `Application with identifier '${body.client_id ?? ''}' was not found in the directory '${tenant}'.`);
      return;
    }
    if (body.client_secret !== config.clientSecret) {
      aadError(res, 401, 'invalid_client', 7000215, 'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.');
      return;
    }
    const origin = state.baseUrl || `${req.protocol}://${req.get('host') ?? ''}`;
    if (body.scope !== `${origin}/.default`) {
      aadError(res, 400, 'invalid_scope', 70011, `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid: '${body.scope ?? ''}'. Expected '${origin}/.default'.`);
      return;
    }
    const nowMs = state.now();
    for (const [token, info] of state.tokens) if (info.expiresAt <= nowMs) state.tokens.delete(token);
    const accessToken = `eyJ0eXAiOiJKV1QiLCJzaW0iOnRydWV9.${randomBytes(32).toString('base64url')}`;
    state.tokens.set(accessToken, { userId: config.syncUserId, expiresAt: nowMs + config.tokenLifetimeSeconds * 1000 });
    res.status(200).json({
      token_type: 'Bearer',
      expires_in: config.tokenLifetimeSeconds,
      ext_expires_in: config.tokenLifetimeSeconds,
      access_token: accessToken,
    });
  });

  // ---- admin JSON API (demo mode) ----
  app.use('/__admin', express.json({ limit: '50mb' }), createAdminRouter(state));

  // ---- Web API ----
  app.use(
    '/api/data',
    (req: Request, res: Response, next: NextFunction) => {
      if (!API_PREFIX.test(req.originalUrl)) {
        next('router');
        return;
      }
      res.setHeader('OData-Version', '4.0');
      let endpoint = `${req.method} ${apiPath(req).replace(new RegExp(GUID, 'g'), 'id')}`;
      res.on('finish', () => count(endpoint, res.statusCode));
      const auth = req.get('authorization');
      const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
      const info = token === undefined ? undefined : state.tokens.get(token);
      if (!info || info.expiresAt <= state.now()) {
        res.setHeader(
          'WWW-Authenticate',
          `Bearer authorization_uri=https://login.microsoftonline.com/${config.tenantId}/oauth2/authorize, resource_id=${state.baseUrl}`,
        );
        res.status(401).json({ error: { code: '', message: info ? 'Bearer token expired.' : 'Request is not authenticated (missing or invalid bearer token).' } });
        return;
      }
      const userId = info.userId;
      // injected faults come before the limits, as an overloaded front end would answer
      const fault = state.faults[0];
      const run = () => {
        const refusal = admit(state, userId, res);
        if (refusal) {
          sendError(res, refusal);
          return;
        }
        res.on('close', () => state.inFlight.set(userId, (state.inFlight.get(userId) ?? 1) - 1));
        res.locals.userId = userId;
        res.locals.setEndpoint = (name: string) => {
          endpoint = `${req.method} ${name}`;
        };
        // a batch takes its time once its operations are known (see runBatch)
        const latency = isBatch(req) ? 0 : config.timing.latencyMs;
        if (latency > 0) setTimeout(next, latency);
        else next();
      };
      if (req.originalUrl.length > config.maxUrlLength) {
        res.status(414).json({ error: { code: '0x8006088e', message: `The request URL is longer than ${config.maxUrlLength} characters. Send long queries inside a $batch request.` } });
        return;
      }
      if (fault) {
        fault.count -= 1;
        if (fault.count <= 0) state.faults.shift();
        for (const listener of state.faultListeners) listener(fault);
        switch (fault.kind) {
          case 'rate_limit':
            sendError(res, new SimHttpError(429, fault.code ?? '0x80072322', 'Number of requests exceeded the limit of 6000 over time window of 300 seconds.', { 'Retry-After': String(fault.retryAfterSeconds) }));
            return;
          case 'server_error': {
            const status = fault.status ?? 503;
            sendError(res, new SimHttpError(status, '0x80040216', status === 503 ? 'Service Unavailable' : 'An unexpected error occurred.'));
            return;
          }
          case 'network':
            req.socket.destroy();
            return;
          case 'latency':
            setTimeout(run, fault.ms);
            return;
        }
      }
      run();
    },
    express.json({ limit: '16mb', type: ['application/json', 'application/*+json'] }),
    express.text({ limit: '64mb', type: 'multipart/mixed' }),
    (req: Request, res: Response) => {
      const ctx: WriteContext = { userId: res.locals.userId as string, fullAccess: res.locals.userId !== config.syncUserId, remotePort: req.socket.remotePort };
      loseAnswerIfWritten(state, req, res);
      if (isBatch(req)) {
        (res.locals.setEndpoint as (n: string) => void)('$batch');
        runBatch(state, req, res, ctx).catch((error: unknown) => {
          if (error instanceof SimHttpError) sendError(res, error);
          else sendError(res, new SimHttpError(500, '0x80040216', error instanceof Error ? error.message : String(error)));
        });
        return;
      }
      try {
        const name = handleApi(state, req, res, ctx);
        (res.locals.setEndpoint as (n: string) => void)(name);
      } catch (error) {
        if (error instanceof SimHttpError) sendError(res, error);
        else if (error instanceof ODataQueryError) sendError(res, new SimHttpError(400, error.code, error.message));
        else throw error;
      }
    },
  );

  app.use((req: Request, res: Response) => {
    res.status(404).json({ error: { code: '0x8006088a', message: `Resource not found for the segment '${req.path}'.` } });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = error as { type?: string; status?: number; message?: string };
    if (e.type === 'entity.parse.failed') {
      sendError(res, new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: the body is not valid JSON (${e.message ?? ''}).`));
      return;
    }
    if (e.type === 'entity.too.large') {
      sendError(res, new SimHttpError(413, '0x80048d19', 'Request entity too large.'));
      return;
    }
    res.status(500).json({ error: { code: '0x80040216', message: e.message ?? 'An unexpected error occurred.' } });
  });
  return app;
}

// ---- admin ---------------------------------------------------------------------------------------

export type DataverseSimulatorAdmin = ReturnType<typeof createAdmin>;

function createAdmin(state: DataverseSimulatorState) {
  const store = state.store;
  const asUser = (userId?: string, depth?: number): WriteContext => ({ userId: (userId ?? state.config.uiUserId).toLowerCase(), fullAccess: true, ...(depth ? { depth } : {}) });
  const plain = (t: SimTable, rec: SimRecord): Record<string, unknown> =>
    serialize(state, t, rec, null, { userId: state.config.uiUserId, fullAccess: true });
  return {
    /** creates a row as the UI user (or `asUserId`): fires webhooks, business rules apply; returns the Web API row */
    create(table: string, values: Record<string, unknown>, asUserId?: string): Record<string, unknown> {
      return plain(store.table(table), store.create(table, values, asUser(asUserId)));
    },
    /** `depth` 2 or more: the write of a plug-in step another operation triggered (its webhook says so in Depth) */
    update(table: string, id: string, values: Record<string, unknown>, asUserId?: string, depth?: number): Record<string, unknown> {
      return plain(store.table(table), store.update(table, id, values, asUser(asUserId, depth)));
    },
    delete(table: string, id: string, asUserId?: string): void {
      store.delete(table, id, asUser(asUserId));
    },
    /** QualifyLead with CreateContact; returns the new contact row */
    qualifyLead(leadId: string, asUserId?: string): Record<string, unknown> {
      return plain(store.table('contact'), store.qualifyLead(leadId, asUser(asUserId)));
    },
    /** a user merges two rows (the Merge action): the subordinate is deactivated, the target survives */
    merge(table: string, targetId: string, subordinateId: string, updateContent: Record<string, unknown> = {}, asUserId?: string): Record<string, unknown> {
      return plain(store.table(table), store.merge(table, targetId, subordinateId, updateContent, false, asUser(asUserId)));
    },
    get(table: string, id: string): Record<string, unknown> | null {
      const rec = store.get(table, id);
      return rec ? plain(store.table(table), rec) : null;
    },
    list(table: string): Record<string, unknown>[] {
      const t = store.table(table);
      return [...store.rows(table).values()].map((rec) => plain(t, rec));
    },
    count(table: string): number {
      return store.rows(table).size;
    },
    /** benchmark seeding: no webhooks, no business rules */
    bulkInsert(table: string, rows: Record<string, unknown>[]): number {
      return store.bulkInsert(table, rows, state.config.uiUserId);
    },
    addUser(user: {
      domainname: string;
      firstname?: string;
      lastname?: string;
      systemuserid?: string;
      internalemailaddress?: string;
      title?: string;
      jobtitle?: string;
      address1_telephone1?: string;
      mobilephone?: string;
    }): string {
      const id = (user.systemuserid ?? randomUUID()).toLowerCase();
      store.bulkInsert('systemuser', [{ ...user, systemuserid: id }], state.config.uiUserId);
      return id;
    },
    registerWebhook(registration: Partial<WebhookRegistration> & { url: string }): WebhookRegistration {
      return state.webhooks.register(registration);
    },
    unregisterWebhook(id: string): boolean {
      return state.webhooks.unregister(id);
    },
    webhooks(): WebhookRegistration[] {
      return [...state.webhooks.registrations];
    },
    webhookDeliveries(): WebhookDelivery[] {
      return [...state.webhooks.deliveries];
    },
    flushWebhooks(): Promise<void> {
      return state.webhooks.flush();
    },
    /** secures a column; the app user gets only the grants given (default none) */
    secureColumn(table: string, column: string, grant: Partial<ColumnGrant> = {}): void {
      if (!store.table(table).attributes.has(column)) throw new Error(`Unknown column ${table}.${column}`);
      store.securedColumns.set(`${table}.${column}`, { read: grant.read ?? false, create: grant.create ?? false, update: grant.update ?? false });
    },
    unsecureColumn(table: string, column: string): void {
      store.securedColumns.delete(`${table}.${column}`);
    },
    businessRules(): BusinessRule[] {
      return [...store.rules];
    },
    addBusinessRule(rule: Omit<BusinessRule, 'id'> & { id?: string }): BusinessRule {
      const full: BusinessRule = { ...rule, id: rule.id ?? randomUUID() };
      store.rules.push(full);
      return full;
    },
    removeBusinessRule(id: string): boolean {
      const before = store.rules.length;
      store.rules = store.rules.filter((r) => r.id !== id);
      return store.rules.length !== before;
    },
    /** registers a plug-in that rewrites a value on every write (see ValueRewrite) */
    addValueRewrite(rewrite: Omit<ValueRewrite, 'id'> & { id?: string }): ValueRewrite {
      const full: ValueRewrite = { ...rewrite, id: rewrite.id ?? randomUUID() };
      store.rewrites.push(full);
      return full;
    },
    removeValueRewrite(id: string): boolean {
      const before = store.rewrites.length;
      store.rewrites = store.rewrites.filter((r) => r.id !== id);
      return store.rewrites.length !== before;
    },
    /** in-process only: hears of each stored create, update and delete, as webhooks do (a bench's arrival clock) */
    onRecordChanged(listener: (table: string, id: string) => void): void {
      state.changeListeners.push(listener);
    },
    /** in-process only: hears each rewrite as it happens (a test's edit log) */
    onValueRewrite(listener: (applied: AppliedRewrite) => void): void {
      store.rewriteListeners.push(listener);
    },
    /** every delta token issued so far for the table(s) answers 0x80044352 */
    expireDeltaTokens(table?: string): void {
      for (const name of table ? [table] : ['lead', 'contact', 'account']) store.deltaFloor.set(name, store.version + 1);
    },
    setChangeTracking(table: string, enabled: boolean): void {
      store.table(table);
      store.changeTrackingEnabled.set(table, enabled);
    },
    /** revokes every access token: the next call answers 401 until a new token is fetched */
    expireAccessTokens(): void {
      state.tokens.clear();
    },
    setTokenLifetime(seconds: number): void {
      state.config.tokenLifetimeSeconds = seconds;
    },
    setLimits(limits: Partial<typeof state.config.limits>): void {
      Object.assign(state.config.limits, limits);
      state.requestLog.clear();
      state.executionLog.clear();
    },
    /** per-request latency and per-operation execution time inside a $batch */
    setTiming(timing: Partial<typeof state.config.timing>): void {
      Object.assign(state.config.timing, timing);
    },
    injectFault(fault: SimFault): void {
      if (fault.kind === 'lost_answer') state.lostAnswers.push({ ...fault });
      else state.faults.push({ ...fault });
    },
    clearFaults(): void {
      state.faults.length = 0;
      state.lostAnswers.length = 0;
    },
    /** in-process only: hears each injected fault at the moment it takes effect */
    onFault(listener: (fault: SimFault) => void): void {
      state.faultListeners.push(listener);
    },
    /** in-process only: hears each committed create, update and delete with who made it and from which port */
    onWrite(listener: (change: SimChange) => void): void {
      state.writeListeners.push(listener);
    },
    stats(): Record<string, EndpointCounter> {
      return Object.fromEntries([...state.counters].map(([k, v]) => [k, { calls: v.calls, byStatus: { ...v.byStatus } }]));
    },
    resetStats(): void {
      state.counters.clear();
    },
    /** drops rows, rules, secured columns, faults, webhooks and counters; users and credentials stay */
    /** the published duplicate rules (defaults: leads and contacts by email, accounts by name) */
    setDuplicateRules(rules: readonly DuplicateRule[]): void {
      state.duplicates.setRules(rules);
    },
    /** the HTTP status of a duplicate refusal: 500 as Microsoft's example (default) or 412 as its status table */
    setDuplicateStatus(status: 500 | 412): void {
      state.duplicates.setStatus(status);
    },
    reset(): void {
      store.reset();
      state.duplicates.reset();
      state.faults.length = 0;
      state.lostAnswers.length = 0;
      state.counters.clear();
      state.requestLog.clear();
      state.executionLog.clear();
      state.queryCache.clear();
      state.webhooks.registrations = [];
      state.webhooks.deliveries.length = 0;
    },
  };
}

function createAdminRouter(state: DataverseSimulatorState): express.Router {
  const router = express.Router();
  const admin = createAdmin(state);
  const wrap = (fn: (req: Request) => unknown) => async (req: Request, res: Response) => {
    try {
      const result = await fn(req);
      if (result === undefined) res.status(204).end();
      else res.status(200).json(result);
    } catch (error) {
      if (error instanceof SimHttpError) sendError(res, error);
      else res.status(400).json({ error: { code: '', message: error instanceof Error ? error.message : String(error) } });
    }
  };
  const body = (req: Request) => (req.body ?? {}) as Record<string, unknown>;
  const p = (req: Request, name: string) => String(req.params[name]);
  router.get('/records/:table', wrap((req) => admin.list(p(req, 'table'))));
  router.get('/records/:table/:id', wrap((req) => admin.get(p(req, 'table'), p(req, 'id')) ?? Promise.reject(new SimHttpError(404, '0x80040217', 'Does Not Exist'))));
  router.post('/records/:table', wrap((req) => admin.create(p(req, 'table'), body(req))));
  router.patch('/records/:table/:id', wrap((req) => admin.update(p(req, 'table'), p(req, 'id'), body(req))));
  router.delete('/records/:table/:id', wrap((req) => admin.delete(p(req, 'table'), p(req, 'id'))));
  router.post('/leads/:id/qualify', wrap((req) => admin.qualifyLead(p(req, 'id'))));
  router.post('/merge/:table', wrap((req) => {
    const b = body(req);
    return admin.merge(p(req, 'table'), String(b.targetId), String(b.subordinateId), (b.updateContent as Record<string, unknown> | undefined) ?? {});
  }));
  router.get('/webhooks', wrap(() => admin.webhooks()));
  router.post('/webhooks', wrap((req) => admin.registerWebhook(body(req) as Partial<WebhookRegistration> & { url: string })));
  router.delete('/webhooks/:id', wrap((req) => ({ removed: admin.unregisterWebhook(p(req, 'id')) })));
  router.get('/webhook-deliveries', wrap(() => admin.webhookDeliveries()));
  router.post('/secured-columns', wrap((req) => {
    const b = body(req) as { table: string; column: string } & Partial<ColumnGrant>;
    admin.secureColumn(b.table, b.column, b);
  }));
  router.delete('/secured-columns/:table/:column', wrap((req) => admin.unsecureColumn(p(req, 'table'), p(req, 'column'))));
  router.get('/business-rules', wrap(() => admin.businessRules()));
  router.post('/business-rules', wrap((req) => admin.addBusinessRule(body(req) as Omit<BusinessRule, 'id'>)));
  router.delete('/business-rules/:id', wrap((req) => ({ removed: admin.removeBusinessRule(p(req, 'id')) })));
  router.get('/value-rewrites', wrap(() => state.store.rewrites));
  router.post('/value-rewrites', wrap((req) => admin.addValueRewrite(body(req) as Omit<ValueRewrite, 'id'>)));
  router.delete('/value-rewrites/:id', wrap((req) => ({ removed: admin.removeValueRewrite(p(req, 'id')) })));
  router.post('/delta-tokens/expire', wrap((req) => admin.expireDeltaTokens(body(req).table as string | undefined)));
  router.post('/change-tracking', wrap((req) => admin.setChangeTracking(String(body(req).table), body(req).enabled === true)));
  router.post('/access-tokens/expire', wrap(() => admin.expireAccessTokens()));
  router.post('/limits', wrap((req) => admin.setLimits(body(req))));
  router.post('/faults', wrap((req) => admin.injectFault(body(req) as SimFault)));
  router.delete('/faults', wrap(() => admin.clearFaults()));
  router.get('/stats', wrap(() => admin.stats()));
  router.post('/reset', wrap(() => admin.reset()));
  return router;
}

export type DataverseSimulator = {
  /** environment URL (Web API under /api/data/v9.2/) */
  url: string;
  tokenUrl: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  syncUserId: string;
  uiUserId: string;
  admin: DataverseSimulatorAdmin;
  close(): Promise<void>;
};

export async function startDataverseSimulator(options: DataverseSimulatorOptions = {}): Promise<DataverseSimulator> {
  const state = createDataverseSimulatorState(options);
  const app = createDataverseSimulatorApp(state);
  const host = options.host ?? '127.0.0.1';
  // Node refuses request lines over 16 KB by default; Dataverse takes URLs up to maxUrlLength
  const server = createServer({ maxHeaderSize: 2 * state.config.maxUrlLength + 16_384 }, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  state.baseUrl = options.publicUrl?.replace(/\/+$/, '') ?? `http://${host}:${port}`;
  const admin = createAdmin(state);
  return {
    url: state.baseUrl,
    tokenUrl: `${state.baseUrl}/${state.config.tenantId}/oauth2/v2.0/token`,
    tenantId: state.config.tenantId,
    clientId: state.config.clientId,
    clientSecret: state.config.clientSecret,
    syncUserId: state.config.syncUserId,
    uiUserId: state.config.uiUserId,
    admin,
    async close() {
      await state.webhooks.flush();
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
