// Rows of a table: its entity set (query, create) and one row by id (read, update or upsert, delete).
import type { SimTable } from '../dataverse.metadata.ts';
import type { DataverseStore } from '../dataverse.store.ts';
import { SimHttpError } from '../dataverse.types.ts';
import { checkIfMatch, contextUrl, etagOf, GUID, parseSelect, preferences, queryParams, requireJsonBody, serialize, writeResponse } from '../dataverse.wire.ts';
import { parseExpand } from '../odata-expand.ts';
import { queryCollection } from './query.ts';
import type { ApiCall, ApiRoute } from './route.ts';

/** The answer to a path no route knows: a bad key on a known entity set is a 400, anything else a 404. */
export function unknownPath(store: DataverseStore, path: string): SimHttpError {
  const keyed = /^([a-z_]+)\((.*)\)$/.exec(path);
  if (keyed?.[1] && store.tableBySet(keyed[1])) {
    return new SimHttpError(400, '0x80060888', `The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.${store.tableBySet(keyed[1])!.logicalName}'. Ensure that the names and number of key properties match the declared or alternate key properties for the resource.`);
  }
  return new SimHttpError(404, '0x8006088a', `Resource not found for the segment '${path.split(/[/(]/)[0] ?? path}'.`);
}

/** The table the entity set in the path names, if the call's verb may touch it. */
function tableOf({ store, req, match, path }: ApiCall): SimTable {
  const t = store.tableBySet(match[1]!);
  if (!t) throw unknownPath(store, path);
  if (!t.writable && req.method !== 'GET') throw new SimHttpError(405, '0x80060888', `The HTTP verb ${req.method} is not supported for ${t.entitySet} by this simulator.`);
  return t;
}

function createRow(call: ApiCall): void {
  const t = tableOf(call);
  const body = requireJsonBody(call.req);
  call.state.duplicates.check(call.store, t.logicalName, body, call.req.get('mscrm.suppressduplicatedetection'));
  const rec = call.store.create(t.logicalName, body, call.ctx);
  writeResponse(call.state, call.req, call.res, t, rec, true, call.ctx);
}

function readRow(call: ApiCall): void {
  const { state, store, req, res, ctx, base } = call;
  const t = tableOf(call);
  const id = call.match[2]!.toLowerCase();
  const rec = store.get(t.logicalName, id);
  if (!rec) throw store.notFound(t.logicalName, id);
  const select = parseSelect(t, queryParams(req).get('$select'));
  const expand = parseExpand(t, queryParams(req).get('$expand'), (name) => store.table(name));
  res.setHeader('ETag', etagOf(rec));
  // never 304 when $expand is used (reference dataverse §2.5)
  if (expand.length === 0 && req.get('if-none-match') === etagOf(rec)) {
    res.status(304).end();
    return;
  }
  res.status(200).json({ '@odata.context': contextUrl(base, t, select, '/$entity'), ...serialize(state, t, rec, select, ctx, preferences(req).annotations, expand) });
}

/** PATCH updates; without If-Match on a row that does not exist it is an upsert (If-None-Match: * forbids the update). */
function updateRow(call: ApiCall): void {
  const { state, store, req, res, ctx } = call;
  const t = tableOf(call);
  const id = call.match[2]!.toLowerCase();
  const rec = store.get(t.logicalName, id);
  const body = requireJsonBody(req);
  checkIfMatch(req, rec, t.logicalName, id);
  if (req.get('if-none-match') === '*' && rec) {
    throw new SimHttpError(412, '0x80040237', 'A record with matching key values already exists.');
  }
  if (!rec) {
    const created = store.create(t.logicalName, { ...body, [t.primaryKey]: id }, ctx);
    writeResponse(state, req, res, t, created, true, ctx);
    return;
  }
  const updated = store.update(t.logicalName, id, body, ctx);
  writeResponse(state, req, res, t, updated, false, ctx);
}

function deleteRow(call: ApiCall): void {
  const { store, req, res, ctx } = call;
  const t = tableOf(call);
  const id = call.match[2]!.toLowerCase();
  const rec = store.get(t.logicalName, id);
  if (!rec) throw store.notFound(t.logicalName, id);
  checkIfMatch(req, rec, t.logicalName, id);
  store.delete(t.logicalName, id, ctx);
  res.status(204).end();
}

export const rowRoutes: ApiRoute[] = [
  {
    pattern: /^([a-z_]+)$/,
    endpoint: ({ match }) => match[1]!,
    methods: { GET: (call) => queryCollection(call.state, call.req, call.res, tableOf(call), call.ctx), POST: createRow },
    refuse: (call) => {
      tableOf(call);
      return new SimHttpError(405, '0x80060888', `The HTTP verb ${call.req.method} is not allowed on a collection.`);
    },
  },
  {
    pattern: new RegExp(`^([a-z_]+)\\((${GUID})\\)$`),
    endpoint: ({ match }) => `${match[1]!}(id)`,
    methods: { GET: readRow, PATCH: updateRow, DELETE: deleteRow },
    refuse: (call) => {
      tableOf(call);
      return new SimHttpError(405, '0x80060888', `The HTTP verb ${call.req.method} is not supported.`);
    },
  },
];
