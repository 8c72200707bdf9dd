// The person (lead) resource: query by a searchable field, sync (create/update), get by id, delete,
// merge, and the two describe endpoints (reference marketo §3).
import { createHash } from 'node:crypto';
import { defaultLeadReadFields } from '../marketo.fields.ts';
import { decodeQueryToken, encodeQueryToken } from '../marketo.paging.ts';
import { coerceFieldValue, isoSeconds, type MarketoChangeOrigin, type MarketoStore, type RecordReason, type StoredLead } from '../marketo.store.ts';
import type { MarketoSim } from '../marketo.state.ts';
import { SimulatorError, type Envelope, type HandlerContext, type MarketoSimulatorLead, type Route } from '../marketo.types.ts';
import { isObject, listParam, MAX_BATCH, parseBatchSize } from './params.ts';

const MAX_FILTER_MATCHES = 1000;

export function project(lead: StoredLead, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { id: lead.id };
  for (const name of fields) {
    if (name === 'id') continue;
    if (name === 'createdAt') out[name] = isoSeconds(lead.createdAt);
    else if (name === 'updatedAt') out[name] = isoSeconds(lead.updatedAt);
    else {
      const value = lead.values[name];
      if (value !== undefined && value !== null) out[name] = value;
    }
  }
  return out;
}

export function allFieldsOf(store: MarketoStore, lead: StoredLead): MarketoSimulatorLead {
  return project(lead, store.fields.map((f) => f.name)) as MarketoSimulatorLead;
}

export function requestedFields(store: MarketoStore, params: URLSearchParams, fallback: readonly string[]): readonly string[] {
  const fields = listParam(params, 'fields') ?? fallback;
  for (const name of fields) {
    if (!store.field(name)) throw new SimulatorError('1006', `Field '${name}' not found`);
  }
  return fields;
}

function apiOrigin(sim: MarketoSim, method: string, requestId: string): MarketoChangeOrigin {
  return { kind: 'api', user: sim.apiUser, method, requestId };
}


function queryLeads(store: MarketoStore, ctx: HandlerContext): Envelope {
  const filterType = ctx.params.get('filterType');
  const filterValues = ctx.params.get('filterValues');
  if (!filterType && !filterValues) throw new SimulatorError('605', 'HTTP Method not supported');
  if (!filterType) throw new SimulatorError('701', 'filterType cannot be blank');
  if (!filterValues) throw new SimulatorError('701', 'filterValues cannot be blank');
  const field = store.field(filterType);
  if (!field) throw new SimulatorError('1003', `Invalid filterType '${filterType}'`);
  if (!field.searchable) throw new SimulatorError('1011', `Field '${filterType}' not supported`);
  const values = filterValues
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
  if (values.length > MAX_BATCH) throw new SimulatorError('1003', `filterValues exceeds the maximum of ${MAX_BATCH}`);
  const fields = requestedFields(store, ctx.params, defaultLeadReadFields);
  const batchSize = parseBatchSize(ctx.params);
  const ids = new Set<number>();
  for (const value of values) for (const id of store.findBy(field.name, value)) ids.add(id);
  if (ids.size > MAX_FILTER_MATCHES) throw new SimulatorError('1003', 'Too many results match the filter');
  const sorted = [...ids].sort((a, b) => a - b);
  const queryKey = createHash('sha1').update(`${filterType}\n${values.join(',')}\n${fields.join(',')}`).digest('hex').slice(0, 16);
  let offset = 0;
  const rawToken = ctx.params.get('nextPageToken');
  if (rawToken) {
    const decoded = decodeQueryToken(rawToken, queryKey);
    if (decoded === undefined) throw new SimulatorError('1003', 'Invalid nextPageToken');
    offset = decoded;
  }
  const page = sorted.slice(offset, offset + batchSize);
  const more = offset + batchSize < sorted.length;
  return {
    result: page.flatMap((id) => {
      const lead = store.get(id);
      return lead ? [project(lead, fields)] : [];
    }),
    ...(more ? { moreResult: true, nextPageToken: encodeQueryToken(offset + batchSize, queryKey) } : {}),
  };
}

function syncRecord(
  store: MarketoStore,
  record: unknown,
  action: string,
  lookupField: string,
  partitionName: unknown,
  origin: MarketoChangeOrigin,
): Record<string, unknown> {
  const skip = (reason: RecordReason) => ({ status: 'skipped', reasons: [reason] });
  if (!isObject(record)) return skip({ code: '1003', message: 'Invalid data' });
  const values: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(record)) {
    if (key === 'id' && lookupField === 'id') continue;
    if (key === 'id' && action === 'createOnly') return skip({ code: '1003', message: "Invalid data: 'id' is not allowed with createOnly" });
    const field = store.field(key);
    if (!field) return skip({ code: '1006', message: `Field '${key}' not found` });
    if (field.readOnly) return skip({ code: '1006', message: `Field '${key}' is not updateable` });
    const coerced = coerceFieldValue(field, raw);
    if ('reason' in coerced) return skip(coerced.reason);
    values[key] = coerced.value;
  }
  if (partitionName !== undefined && partitionName !== 'Default') {
    return skip({ code: '1008', message: `Access denied to partition '${typeof partitionName === 'string' ? partitionName : JSON.stringify(partitionName)}'` });
  }
  const lookupValue = record[lookupField];
  if ((lookupValue === undefined || lookupValue === null || lookupValue === '') && action !== 'createDuplicate') {
    return skip({ code: '1002', message: `Value for lookup field '${lookupField}' not specified` });
  }
  const matches = action === 'createDuplicate' ? [] : store.findBy(lookupField, lookupValue);
  const create = () => ({ id: store.create(values, origin).id, status: 'created' });
  const update = (id: number) => {
    store.update(id, values, origin);
    return { id, status: 'updated' };
  };
  switch (action) {
    case 'createOnly':
      return matches.length > 0 ? skip({ code: '1005', message: 'Lead already exists' }) : create();
    case 'updateOnly':
      if (matches.length === 0) return skip({ code: '1004', message: 'Lead not found' });
      if (matches.length > 1) return skip({ code: '1007', message: 'Multiple lead match lookup criteria' });
      return update(matches[0] ?? 0);
    case 'createOrUpdate':
      if (matches.length > 1) return skip({ code: '1007', message: 'Multiple lead match lookup criteria' });
      return matches.length === 1 ? update(matches[0] ?? 0) : create();
    default:
      return create();
  }
}

function syncLeads(sim: MarketoSim, ctx: HandlerContext): Envelope {
  const { store } = sim;
  if (!isObject(ctx.body)) throw new SimulatorError('1003', 'Invalid request body');
  const action = ctx.body['action'] ?? 'createOrUpdate';
  if (typeof action !== 'string' || !['createOnly', 'updateOnly', 'createOrUpdate', 'createDuplicate'].includes(action)) {
    throw new SimulatorError('1003', `Invalid action '${typeof action === 'string' ? action : JSON.stringify(action)}'`);
  }
  const lookupField = ctx.body['lookupField'] ?? 'email';
  if (typeof lookupField !== 'string') throw new SimulatorError('1003', 'Invalid lookupField');
  const lookup = store.field(lookupField);
  if (!lookup) throw new SimulatorError('1006', `Field '${lookupField}' not found`);
  if (!lookup.searchable) throw new SimulatorError('1011', `Field '${lookupField}' not supported`);
  if (lookupField === 'id' && action !== 'updateOnly') {
    throw new SimulatorError('1003', "lookupField 'id' is only allowed with action 'updateOnly'");
  }
  const partitionName = ctx.body['partitionName'];
  if (partitionName !== undefined && action === 'updateOnly') {
    throw new SimulatorError('1010', 'Partition update not allowed');
  }
  const asyncProcessing = ctx.body['asyncProcessing'];
  if (asyncProcessing !== undefined && typeof asyncProcessing !== 'boolean') throw new SimulatorError('1003', 'Invalid asyncProcessing');
  const input = ctx.body['input'];
  if (!Array.isArray(input) || input.length === 0) throw new SimulatorError('701', 'input cannot be blank');
  if (input.length > MAX_BATCH) throw new SimulatorError('1003', `Batch size exceeds the maximum of ${MAX_BATCH}`);
  const origin = apiOrigin(sim, 'syncLead', ctx.requestId);
  return { result: input.map((record: unknown) => syncRecord(store, record, action, lookupField, partitionName, origin)) };
}

function deleteLeads(sim: MarketoSim, ctx: HandlerContext): Envelope {
  let ids: unknown[];
  const queryIds = listParam(ctx.params, 'id');
  if (queryIds && ctx.rawBodyLength === 0) ids = queryIds.map((id) => (/^\d+$/.test(id) ? Number(id) : id));
  else {
    if (!isObject(ctx.body)) throw new SimulatorError('701', 'input cannot be blank');
    const input = ctx.body['input'];
    if (!Array.isArray(input) || input.length === 0) throw new SimulatorError('701', 'input cannot be blank');
    ids = input.map((item: unknown) => (isObject(item) ? item['id'] : undefined));
  }
  if (ids.length > MAX_BATCH) throw new SimulatorError('1003', `Batch size exceeds the maximum of ${MAX_BATCH}`);
  const origin = apiOrigin(sim, 'deleteLead', ctx.requestId);
  return {
    result: ids.map((id) => {
      if (typeof id !== 'number' || !Number.isSafeInteger(id)) return { status: 'skipped', reasons: [{ code: '1003', message: 'Invalid data' }] };
      return sim.store.remove(id, origin) ? { id, status: 'deleted' } : { id, status: 'skipped', reasons: [{ code: '1004', message: 'Lead not found' }] };
    }),
  };
}

const MAX_MERGE_LOSERS = 25;

/** POST /rest/v1/leads/{winner}/merge.json?leadId=|leadIds= (reference marketo §11): no `result` on success. */
function mergeLeads(sim: MarketoSim, ctx: HandlerContext, match: RegExpExecArray): Envelope {
  const winnerId = Number(match[1]);
  const raw = listParam(ctx.params, 'leadIds') ?? listParam(ctx.params, 'leadId');
  if (!raw || raw.length === 0) throw new SimulatorError('701', 'leadId cannot be blank');
  if (raw.length > MAX_MERGE_LOSERS) throw new SimulatorError('1080', `Merge supports at most ${MAX_MERGE_LOSERS} lead ids`);
  if (raw.some((id) => !/^\d+$/.test(id))) throw new SimulatorError('1003', 'Invalid leadIds');
  const losers = [...new Set(raw.map(Number))];
  if (losers.includes(winnerId)) throw new SimulatorError('1003', 'A lead cannot be merged into itself');
  for (const id of [winnerId, ...losers]) if (!sim.store.get(id)) throw new SimulatorError('1004', 'Lead not found');
  sim.store.merge(winnerId, losers, apiOrigin(sim, 'mergeLead', ctx.requestId), { loserDeleteActivities: sim.mergeLogsDeleteLead });
  return {};
}

function getLead(store: MarketoStore, ctx: HandlerContext, match: RegExpExecArray): Envelope {
  const lead = store.get(Number(match[1]));
  return { result: lead ? [project(lead, requestedFields(store, ctx.params, defaultLeadReadFields))] : [] };
}

function describe(store: MarketoStore): Envelope {
  return {
    result: store.fields.map((f) => ({
      id: f.id,
      displayName: f.displayName,
      dataType: f.dataType,
      ...(f.length === undefined ? {} : { length: f.length }),
      rest: { name: f.name, readOnly: f.readOnly },
      soap: { name: f.soapName, readOnly: f.readOnly },
    })),
  };
}

function describe2(store: MarketoStore): Envelope {
  return {
    result: [
      {
        name: 'API Lead',
        searchableFields: store.fields.filter((f) => f.searchable).map((f) => [f.name]),
        fields: store.fields.map((f) => ({
          name: f.name,
          displayName: f.displayName,
          dataType: f.dataType,
          ...(f.length === undefined ? {} : { length: f.length }),
          updateable: !f.readOnly,
          crmManaged: f.crmManaged ?? false,
        })),
      },
    ],
  };
}

export function leadRoutes(sim: MarketoSim): Route[] {
  const { store } = sim;
  return [
    { endpoint: 'leads.merge', pattern: /^\/rest\/v1\/leads\/(\d+)\/merge\.json$/, methods: { POST: (ctx, match) => mergeLeads(sim, ctx, match) }, jsonBody: true },
    {
      endpoint: 'leads.query',
      postEndpoint: 'leads.sync',
      pattern: /^\/rest\/v1\/leads\.json$/,
      methods: { GET: (ctx) => queryLeads(store, ctx), POST: (ctx) => syncLeads(sim, ctx) },
      jsonBody: true,
    },
    { endpoint: 'leads.delete', pattern: /^\/rest\/v1\/leads\/delete\.json$/, methods: { POST: (ctx) => deleteLeads(sim, ctx) }, jsonBody: true },
    { endpoint: 'lead.get', pattern: /^\/rest\/v1\/lead\/(\d+)\.json$/, methods: { GET: (ctx, match) => getLead(store, ctx, match) } },
    { endpoint: 'leads.describe', pattern: /^\/rest\/v1\/leads\/describe\.json$/, methods: { GET: () => describe(store) } },
    { endpoint: 'leads.describe2', pattern: /^\/rest\/v1\/leads\/describe2\.json$/, methods: { GET: () => describe2(store) } },
  ];
}
