// Reading a table: GET on an entity set, paged by $skiptoken, and change tracking by delta token
// (reference §2.3, §3).
import type { Request, Response } from 'express';
import type { SimAttribute, SimTable } from '../dataverse.metadata.ts';
import { SimHttpError, type SimRecord, type WriteContext } from '../dataverse.types.ts';
import { compareKeys, parseFilter, parseOrderBy, sortKey, type OrderBy } from '../odata-query.ts';
import type { DataverseSimulatorState } from '../dataverse.state.ts';
import { apiBase, contextUrl, parseSelect, preferences, queryParams, serialize } from '../dataverse.wire.ts';
import { parseExpand } from '../odata-expand.ts';

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

export function queryCollection(state: DataverseSimulatorState, req: Request, res: Response, t: SimTable, ctx: WriteContext): void {
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
    trackChanges(state, res, t, ctx, { params, prefs, base, select, cookie, deltatoken });
    return;
  }
  const expand = parseExpand(t, params.get('$expand'), (name) => state.store.table(name));
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
  body.value = page.map((rec) => serialize(state, t, rec, select, ctx, prefs.annotations, expand));
  const lastRow = page.at(-1);
  if (paged && lastRow && start + pageSize < rows.length) {
    body['@odata.nextLink'] = nextLink(base, t.entitySet, params, encodeCookie({ k: sortKey(t, order, lastRow) }, pageNumber + 1, false));
  }
  if (prefs.maxPageSize !== undefined) res.setHeader('Preference-Applied', `odata.maxpagesize=${pageSize}`);
  res.status(200).json(body);
}

type TrackingQuery = {
  params: URLSearchParams;
  prefs: ReturnType<typeof preferences>;
  base: string;
  select: SimAttribute[] | null;
  cookie: ReturnType<typeof decodeCookie> | undefined;
  deltatoken: string | null;
};

/** A page of a change-tracking read: `body` holds its rows and the next or delta link. */
type TrackingPage = { state: DataverseSimulatorState; t: SimTable; ctx: WriteContext; q: TrackingQuery; pageSize: number; body: Record<string, unknown> };

function deltaLink({ state, t, q }: TrackingPage, version: number): string {
  const parts: string[] = [];
  for (const [k, v] of q.params) if (k !== '$skiptoken' && k !== '$deltatoken') parts.push(`${k}=${encodeURIComponent(v)}`);
  parts.push(`$deltatoken=${encodeURIComponent(deltaTokenFor(version, state.now()))}`);
  return `${q.base}${t.entitySet}?${parts.join('&')}`;
}

/**
 * Initial load: every current row, paged by id. The token is minted when the last page is served,
 * so rows changed during a long initial load can be missed, exactly as the platform does (issue #3862).
 */
function initialLoad(page: TrackingPage): void {
  const { state, t, ctx, q, pageSize, body } = page;
  const order = parseOrderBy(t, undefined);
  const rows = sortedRows(state, t, null, order, '');
  let start = 0;
  if (q.cookie) {
    const last = (q.cookie.payload as { k?: unknown }).k;
    if (!Array.isArray(last) || last.length !== order.length) throw new SimHttpError(400, '0x80060888', 'The $skiptoken value is not valid.');
    start = firstAfter(t, order, rows, last);
  }
  const rowsOfPage = rows.slice(start, start + pageSize);
  body['@odata.context'] = contextUrl(q.base, t, q.select);
  body.value = rowsOfPage.map((rec) => serialize(state, t, rec, q.select, ctx, q.prefs.annotations));
  const lastRow = rowsOfPage.at(-1);
  if (lastRow && start + pageSize < rows.length) {
    body['@odata.nextLink'] = nextLink(q.base, t.entitySet, q.params, encodeCookie({ k: sortKey(t, order, lastRow) }, (q.cookie?.page ?? 1) + 1, true));
  } else {
    body['@odata.deltaLink'] = deltaLink(page, state.store.version);
  }
}

/** The changes since a delta token (upserts, then deletions as tombstones), paged by offset. */
function changesSince(page: TrackingPage, deltatoken: string): void {
  const { state, t, ctx, q, pageSize, body } = page;
  const store = state.store;
  const m = /^(\d+)!(\d{2})\/(\d{2})\/(\d{4}) (\d{2}):(\d{2}):(\d{2})$/.exec(deltatoken);
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
  const items = all.slice(offset, offset + pageSize);
  body['@odata.context'] = contextUrl(q.base, t, q.select, '/$delta');
  body.value = items.map((item) =>
    'rec' in item ? serialize(state, t, item.rec, q.select, ctx, q.prefs.annotations) : { '@odata.context': tombstoneContext, id: item.id, reason: 'deleted' },
  );
  if (offset + pageSize < all.length) {
    const params = new URLSearchParams(q.params);
    body['@odata.nextLink'] = nextLink(q.base, t.entitySet, params, encodeCookie({ upTo, offset: offset + pageSize }, (q.cookie?.page ?? 1) + 1, true));
  } else {
    body['@odata.deltaLink'] = deltaLink(page, upTo);
  }
}

function trackChanges(state: DataverseSimulatorState, res: Response, t: SimTable, ctx: WriteContext, q: TrackingQuery): void {
  const pageSize = pageSizeOf(q.prefs);
  const body: Record<string, unknown> = {};
  const page: TrackingPage = { state, t, ctx, q, pageSize, body };
  if (q.deltatoken === null) initialLoad(page);
  else changesSince(page, q.deltatoken);
  res.setHeader('Preference-Applied', q.prefs.maxPageSize === undefined ? 'odata.track-changes' : `odata.track-changes,odata.maxpagesize=${pageSize}`);
  res.status(200).json(body);
}
