// What every Web API resource shares: reading a request (path, options, preferences, body) and
// writing rows the way the Web API serializes them.
import type { Request, Response } from 'express';
import { isLookup, type SimAttribute, type SimTable } from './dataverse.metadata.ts';
import { SimHttpError, type SimLookup, type SimRecord, type WriteContext } from './dataverse.types.ts';
import { expandedRecord, lookupValue, type ExpandSpec } from './odata-expand.ts';
import { resolveProperty } from './odata-query.ts';
import type { DataverseSimulatorState } from './dataverse.state.ts';

export const API_PREFIX = /^\/api\/data\/v9\.[0-2]\//;

export const GUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';

const SUPPORTED_OPTIONS = new Set(['$select', '$filter', '$orderby', '$top', '$skiptoken', '$deltatoken', '$count', '$expand']);

export function sendError(res: Response, error: SimHttpError): void {
  for (const [k, v] of Object.entries(error.headers)) res.setHeader(k, v);
  res.status(error.status).json({ error: { code: error.code, message: error.message } });
}

export function apiBase(state: DataverseSimulatorState, req: Request): string {
  return `${state.baseUrl || `${req.protocol}://${req.get('host') ?? 'localhost'}`}/api/data/v9.2/`;
}

function iso(ms: unknown): string | null {
  return typeof ms === 'number' ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : null;
}

export function etagOf(rec: SimRecord): string {
  return `W/"${rec.versionnumber}"`;
}

/** Annotations a `Prefer: odata.include-annotations="..."` asked for: names, or patterns ending in `*`. */
export type Annotations = readonly string[];

function wantsAnnotation(annotations: Annotations, name: string): boolean {
  return annotations.some((a) => (a.endsWith('*') ? name.startsWith(a.slice(0, -1)) : a === name));
}

export function preferences(req: Request): { maxPageSize?: number; representation: boolean; trackChanges: boolean; continueOnError: boolean; annotations: Annotations } {
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
export function apiPath(req: Request): string {
  const raw = req.originalUrl.split('?')[0] ?? '';
  return decodeURIComponent(raw.replace(API_PREFIX, ''));
}

export function isBatch(req: Request): boolean {
  return apiPath(req) === '$batch';
}

export function queryParams(req: Request): URLSearchParams {
  const q = req.originalUrl.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? req.originalUrl.slice(q + 1) : '');
  for (const key of params.keys()) {
    if (key.startsWith('$') && !SUPPORTED_OPTIONS.has(key)) {
      throw new SimHttpError(400, '0x80060888', `The query parameter '${key}' is not supported.`);
    }
  }
  return params;
}

export function parseSelect(t: SimTable, select: string | null): SimAttribute[] | null {
  if (select === null) return null;
  return select.split(',').map((name) => resolveProperty(t, name.trim(), true));
}

/** The primary name of a row, as a lookup's FormattedValue shows it. */
function primaryName(state: DataverseSimulatorState, ref: SimLookup): string | null {
  const row = state.store.get(ref.logicalName, ref.id);
  const name = row?.values.name ?? row?.values.fullname;
  return typeof name === 'string' ? name : null;
}

/** A row as the Web API serializes it; secured columns the caller cannot read come back null. */
export function serialize(
  state: DataverseSimulatorState,
  t: SimTable,
  rec: SimRecord,
  select: SimAttribute[] | null,
  ctx: WriteContext,
  annotations: Annotations = [],
  expand: readonly ExpandSpec[] = [],
): Record<string, unknown> {
  const row: Record<string, unknown> = { '@odata.etag': etagOf(rec) };
  const columns = select ?? [...t.attributes.values()].filter((a) => a.validForRead);
  for (const attr of columns) {
    const name = attr.logicalName;
    const readable = state.store.canRead(t, name, ctx);
    if (isLookup(attr)) {
      const ref = readable ? lookupValue(rec, attr) : null;
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
  for (const spec of expand) {
    const related = state.store.canRead(t, spec.attribute.logicalName, ctx) ? expandedRecord(spec, rec, (table, id) => state.store.get(table, id)) : null;
    row[spec.navigation] = related ? serialize(state, spec.target, related, spec.select, ctx) : null;
  }
  return row;
}

export function contextUrl(base: string, t: SimTable, select: SimAttribute[] | null, suffix = ''): string {
  const cols = select ? `(${select.map((a) => (isLookup(a) ? `_${a.logicalName}_value` : a.logicalName)).join(',')})` : '';
  return `${base}$metadata#${t.entitySet}${cols}${suffix}`;
}

export function requireJsonBody(req: Request): Record<string, unknown> {
  if (!req.is('application/json')) {
    throw new SimHttpError(415, '0x80048d19', "The request contains an entity body but no 'Content-Type: application/json' header.");
  }
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new SimHttpError(400, '0x80048d19', 'Error identified in Payload provided by the user: a JSON object was expected.');
  }
  return body as Record<string, unknown>;
}

export function checkIfMatch(req: Request, rec: SimRecord | undefined, table: string, id: string): void {
  const ifMatch = req.get('if-match');
  if (ifMatch === undefined) return;
  if (!rec) throw new SimHttpError(404, '0x80040217', `${table} With Id = ${id} Does Not Exist`);
  if (ifMatch !== '*' && ifMatch !== etagOf(rec)) {
    throw new SimHttpError(412, '0x80060882', "The version of the existing record doesn't match the RowVersion property provided.");
  }
}

export function writeResponse(state: DataverseSimulatorState, req: Request, res: Response, t: SimTable, rec: SimRecord, created: boolean, ctx: WriteContext): void {
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
