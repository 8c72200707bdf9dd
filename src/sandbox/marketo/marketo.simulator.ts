import { createHash, randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createStaticLists } from './lists.ts';
import { defaultLeadReadFields, defaultMarketoFields, type MarketoFieldDefinition } from './marketo.fields.ts';
import {
  decodeActivityToken,
  decodeQueryToken,
  encodeActivityToken,
  encodeQueryToken,
} from './marketo.paging.ts';
import {
  ActivityType,
  coerceFieldValue,
  createMarketoStore,
  isoSeconds,
  type MarketoChangeOrigin,
  type MarketoStore,
  type RecordReason,
  type StoredActivity,
  type StoredLead,
} from './marketo.store.ts';
import {
  createWebhookCaller,
  type MarketoWebhookCallResult,
  type MarketoWebhookDefinition,
  type MarketoWebhookTokens,
} from './marketo.webhook.ts';

export type MarketoSimulatorLimits = {
  /** calls admitted per sliding window before 606; Marketo: 100 */
  callsPerWindow: number;
  /** sliding window length in ms; Marketo: 20000 */
  windowMs: number;
  /** calls in flight before 615; Marketo: 10 */
  maxConcurrent: number;
  /** counted calls per day (reset 00:00 US Central) before 607; Marketo: typically 50000 */
  dailyQuota: number;
};

export type MarketoFeedOptions = {
  /** activity-log entries scanned per feed call; sparse filters give short/empty pages */
  scanBlock: number;
  /** probability of answering a feed call with an empty page, same position, moreResult:true */
  emptyPageRate: number;
  /** probability of re-serving the last item of a page on the next page (clients dedupe on marketoGUID) */
  duplicateRate: number;
};

/**
 * A fault answered instead of running the call. `times` counts down (default unlimited), `rate` is a
 * probability (default 1), `endpoint` limits it to one endpoint label (see `MarketoEndpoint`).
 */
export type MarketoFault = {
  times?: number;
  rate?: number;
  endpoint?: MarketoEndpoint;
} & (
  | { type: 'code'; code: string; message?: string }
  | { type: 'http'; status: number }
  | { type: 'hang' }
  /**
   * a write that lands and whose answer is lost: the call runs, then the client hears nothing
   * (`hang`) or a 604 "Request time-out" (reference §5.2, §5.4: timeouts are ambiguous for writes).
   * Only taken by leads.sync calls.
   */
  | { type: 'after-apply'; answer: 'hang' | '604' }
);

/** One REST call as an in-process observer sees it, right before and right after it runs. */
export type MarketoApiCall = {
  endpoint: MarketoEndpoint;
  phase: 'before' | 'after';
  params: URLSearchParams;
  body: unknown;
  /** the caller's TCP port: tells which client process sent it */
  remotePort: number | undefined;
  /** phase 'after': what the call answered (before any after-apply fault replaces it) */
  result?: unknown;
};

export type MarketoEndpoint =
  | 'leads.query'
  | 'leads.sync'
  | 'lead.get'
  | 'leads.delete'
  | 'leads.merge'
  | 'leads.describe'
  | 'leads.describe2'
  | 'activities.pagingtoken'
  | 'activities.leadchanges'
  | 'activities.deletedleads'
  | 'activities'
  | 'activities.types'
  | 'lists.leads'
  | 'stats.usage';

export type MarketoSimulatorOptions = {
  clientId?: string;
  clientSecret?: string;
  /** the API-only user; token `scope` and the "Modifying User" of API changes */
  apiUser?: string;
  /** replaces the default field list */
  fields?: readonly MarketoFieldDefinition[];
  /** lifetime of a minted token; Marketo: 3600 */
  tokenTtlSeconds?: number;
  limits?: Partial<MarketoSimulatorLimits>;
  feed?: Partial<MarketoFeedOptions>;
  /** drop `result` from successful responses that found nothing, as some Marketo endpoints do; default true */
  omitEmptyResult?: boolean;
  /** added to every REST call while it holds a concurrency slot */
  latencyMs?: number;
  now?: () => number;
  /** seeds the fault/paging randomness */
  seed?: number;
  /** used to call webhooks */
  fetch?: typeof fetch;
  /** Marketo: 30000 */
  webhookTimeoutMs?: number;
  /** JSON admin API mount point for demo mode; false disables it; default `/__admin` */
  adminPrefix?: string | false;
  /**
   * whether a merged-away person also gets a Delete Lead activity (the deletedleads feed); Adobe does
   * not say (reference marketo §11): default false, so a client must read Merge Leads (type 32)
   */
  mergeLogsDeleteLead?: boolean;
};

export type MarketoSimulatorLead = Record<string, unknown> & { id: number; createdAt: string; updatedAt: string };

export type MarketoRenderedActivity = {
  id: number;
  marketoGUID: string;
  leadId: number;
  activityDate: string;
  activityTypeId: number;
  primaryAttributeValueId?: number;
  primaryAttributeValue?: string;
  fields?: { id: number; name: string; newValue: string | null; oldValue?: string }[];
  attributes: { name: string; value: string | number }[];
};

export type MarketoEndpointCounters = { calls: number; ok: number; errors: Record<string, number> };

export type MarketoSimulatorCounters = {
  /** REST calls received, whatever the outcome */
  total: number;
  /** calls that counted against rate window and daily quota */
  counted: number;
  identity: number;
  inFlight: number;
  byEndpoint: Partial<Record<MarketoEndpoint | 'unknown', MarketoEndpointCounters>>;
};

const DAY_MS = 86_400_000;
const CENTRAL_OFFSET_MS = 6 * 3_600_000;
const MAX_URI_BYTES = 8 * 1024;
const MAX_BATCH = 300;
const MAX_FILTER_MATCHES = 1000;
// Adobe: calls answered with these codes do not count toward quota or rate limit
const uncountedCodes = new Set(['601', '602', '604', '605', '608', '611']);

class SimulatorError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `+0000` without colon, as the leadchanges/deletedleads examples show; clients must parse both forms. */
function activityDateCompact(ms: number): string {
  return isoSeconds(ms).replace(/Z$/, '+0000');
}

const sinceDatetimePattern = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

function parseSinceDatetime(raw: string): number | undefined {
  if (!sinceDatetimePattern.test(raw)) return undefined;
  const normalised = raw.replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  const ms = Date.parse(/T/.test(normalised) ? normalised : `${normalised}T00:00:00Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

function parseBatchSize(params: URLSearchParams): number {
  const raw = params.get('batchSize');
  if (raw === null || raw === '') return MAX_BATCH;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_BATCH) {
    throw new SimulatorError('1003', `Invalid batchSize '${raw}', must be between 1 and ${MAX_BATCH}`);
  }
  return Number(raw);
}

function listParam(params: URLSearchParams, name: string): string[] | undefined {
  const raw = params.getAll(name).join(',');
  if (raw.trim() === '') return undefined;
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function originAttributes(origin: MarketoChangeOrigin): { name: string; value: string }[] {
  switch (origin.kind) {
    case 'api':
      return [
        { name: 'Reason', value: 'Web service API' },
        { name: 'Source', value: 'Web service API' },
        { name: 'Api Method Name', value: origin.method },
        { name: 'Modifying User', value: origin.user },
        { name: 'Request Id', value: origin.requestId },
      ];
    case 'ui':
      return [
        { name: 'Reason', value: 'Changed in person detail' },
        { name: 'Source', value: 'Person Detail Page' },
        { name: 'Modifying User', value: origin.user },
      ];
    case 'webhook':
      return [
        { name: 'Reason', value: `Webhook: ${origin.webhookName}` },
        { name: 'Source', value: 'Webhook' },
      ];
  }
}

const activityTypes = [
  { id: ActivityType.newLead, name: 'New Lead', description: 'New person', primaryAttribute: { name: 'Lead ID', dataType: 'integer' }, attributes: [{ name: 'Source Type', dataType: 'string' }] },
  {
    id: ActivityType.changeDataValue,
    name: 'Change Data Value',
    description: 'Changed attribute value for a person',
    primaryAttribute: { name: 'Attribute Name', dataType: 'integer' },
    attributes: [
      { name: 'New Value', dataType: 'text' },
      { name: 'Old Value', dataType: 'text' },
      { name: 'Reason', dataType: 'text' },
      { name: 'Source', dataType: 'string' },
    ],
  },
  { id: ActivityType.mergeLeads, name: 'Merge Leads', description: 'Merge persons', primaryAttribute: { name: 'Lead ID', dataType: 'integer' }, attributes: [{ name: 'Merge IDs', dataType: 'string' }] },
  { id: ActivityType.deleteLead, name: 'Delete Lead', description: 'Delete person', primaryAttribute: { name: 'Lead ID', dataType: 'integer' }, attributes: [] },
  { id: ActivityType.callWebhook, name: 'Call Webhook', description: 'Call a webhook', primaryAttribute: { name: 'Webhook ID', dataType: 'integer' }, attributes: [{ name: 'Error Type', dataType: 'string' }] },
];

type Envelope = { result?: unknown[]; moreResult?: boolean; nextPageToken?: string };
type HandlerContext = { params: URLSearchParams; body: unknown; requestId: string; rawBodyLength: number };
type Route = { endpoint: MarketoEndpoint; postEndpoint?: MarketoEndpoint; pattern: RegExp; methods: Partial<Record<'GET' | 'POST', (ctx: HandlerContext, match: RegExpExecArray) => Envelope>>; jsonBody?: boolean };

export type MarketoSimulatorAdmin = ReturnType<typeof createMarketoSimulatorApp>['admin'];

export function createMarketoSimulatorApp(options: MarketoSimulatorOptions = {}) {
  const now = options.now ?? Date.now;
  const clientId = options.clientId ?? `sim-${randomUUID()}`;
  const clientSecret = options.clientSecret ?? randomUUID().replaceAll('-', '');
  const apiUser = options.apiUser ?? 'sync-api@marketo-simulator.invalid';
  const tokenTtlMs = (options.tokenTtlSeconds ?? 3600) * 1000;
  const limits: MarketoSimulatorLimits = { callsPerWindow: 100, windowMs: 20_000, maxConcurrent: 10, dailyQuota: 50_000, ...options.limits };
  const feedOptions: MarketoFeedOptions = { scanBlock: 10_000, emptyPageRate: 0, duplicateRate: 0, ...options.feed };
  let omitEmptyResult = options.omitEmptyResult ?? true;
  let latencyMs = options.latencyMs ?? 0;
  const random = mulberry32(options.seed ?? 0x5eed);
  const store: MarketoStore = createMarketoStore({ fields: options.fields ?? defaultMarketoFields, now });
  const webhooks = createWebhookCaller({ store, fetch: options.fetch ?? fetch, timeoutMs: options.webhookTimeoutMs ?? 30_000 });

  const tokens = new Map<string, { expiresAt: number }>();
  let currentToken: string | undefined;
  let faults: MarketoFault[] = [];
  const callListeners: ((call: MarketoApiCall) => void)[] = [];
  const faultListeners: ((fault: MarketoFault, endpoint: MarketoEndpoint) => void)[] = [];
  // sliding rate window: admission timestamps from `windowHead` on
  let windowTimes: number[] = [];
  let windowHead = 0;
  let dailyDay = -1;
  let dailyUsed = 0;
  let requestSeq = 0;
  let counters: MarketoSimulatorCounters = { total: 0, counted: 0, identity: 0, inFlight: 0, byEndpoint: {} };

  function centralDay(ms: number): number {
    return Math.floor((ms - CENTRAL_OFFSET_MS) / DAY_MS);
  }

  function nextRequestId(): string {
    requestSeq++;
    return `${requestSeq.toString(16)}#${now().toString(16)}`;
  }

  function count(endpoint: MarketoEndpoint | 'unknown', code: string | undefined): void {
    const entry = (counters.byEndpoint[endpoint] ??= { calls: 0, ok: 0, errors: {} });
    entry.calls++;
    if (code === undefined) entry.ok++;
    else entry.errors[code] = (entry.errors[code] ?? 0) + 1;
  }

  function project(lead: StoredLead, fields: readonly string[]): Record<string, unknown> {
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

  function allFieldsOf(lead: StoredLead): MarketoSimulatorLead {
    return project(lead, store.fields.map((f) => f.name)) as MarketoSimulatorLead;
  }

  function requestedFields(params: URLSearchParams, fallback: readonly string[]): readonly string[] {
    const fields = listParam(params, 'fields') ?? fallback;
    for (const name of fields) {
      if (!store.field(name)) throw new SimulatorError('1006', `Field '${name}' not found`);
    }
    return fields;
  }

  function renderActivity(activity: StoredActivity, style: 'leadchange' | 'deleted' | 'generic'): MarketoRenderedActivity {
    const base = {
      id: activity.id,
      marketoGUID: String(activity.id),
      leadId: activity.leadId,
      activityDate: style === 'generic' ? isoSeconds(activity.at) : activityDateCompact(activity.at),
      activityTypeId: activity.typeId,
    };
    if (style === 'deleted') {
      return {
        ...base,
        primaryAttributeValueId: activity.primaryAttributeValueId ?? activity.leadId,
        primaryAttributeValue: activity.primaryAttributeValue ?? '',
        attributes: [],
      };
    }
    const attributes: { name: string; value: string | number }[] = [...originAttributes(activity.origin)];
    if (activity.extraAttributes) attributes.push(...activity.extraAttributes);
    const field = activity.field;
    if (style === 'leadchange') {
      const rendered: MarketoRenderedActivity = { ...base, fields: [], attributes: [...attributes, { name: 'Lead ID', value: activity.leadId }] };
      if (field) {
        rendered.fields = [
          { id: field.id, name: field.name, newValue: field.newValue, ...(field.oldValue === null ? {} : { oldValue: field.oldValue }) },
        ];
      }
      return rendered;
    }
    if (field) {
      if (field.newValue !== null) attributes.push({ name: 'New Value', value: field.newValue });
      if (field.oldValue !== null) attributes.push({ name: 'Old Value', value: field.oldValue });
    }
    return {
      ...base,
      ...(activity.primaryAttributeValueId === undefined ? {} : { primaryAttributeValueId: activity.primaryAttributeValueId }),
      ...(activity.primaryAttributeValue === undefined ? {} : { primaryAttributeValue: activity.primaryAttributeValue }),
      attributes,
    };
  }

  function feedPage(params: URLSearchParams, match: (a: StoredActivity) => boolean, style: 'leadchange' | 'deleted' | 'generic'): Envelope {
    const raw = params.get('nextPageToken');
    if (raw === null || raw === '') throw new SimulatorError('701', 'nextPageToken cannot be blank');
    const token = decodeActivityToken(raw);
    if (!token) throw new SimulatorError('1003', 'Invalid nextPageToken');
    const batchSize = parseBatchSize(params);
    if (feedOptions.emptyPageRate > 0 && random() < feedOptions.emptyPageRate) {
      return { result: [], moreResult: true, nextPageToken: encodeActivityToken(token.position, token.sinceMs) };
    }
    const page = store.feed({ position: Math.max(token.position, 0), sinceMs: token.sinceMs, batchSize, scanBlock: feedOptions.scanBlock, match });
    let next = page.nextPosition;
    if (page.items.length >= 2 && feedOptions.duplicateRate > 0 && random() < feedOptions.duplicateRate) {
      next = (page.items[page.items.length - 1]?.id ?? next + 1) - 1;
    }
    return {
      result: page.items.map((a) => renderActivity(a, style)),
      moreResult: page.moreResult || next < page.nextPosition,
      nextPageToken: encodeActivityToken(next, token.sinceMs),
    };
  }

  function leadIdsParam(params: URLSearchParams): Set<number> | undefined {
    const ids = listParam(params, 'leadIds');
    if (!ids) return undefined;
    if (ids.length > 30) throw new SimulatorError('1003', 'leadIds exceeds the maximum of 30');
    if (ids.some((id) => !/^\d+$/.test(id))) throw new SimulatorError('1003', 'Invalid leadIds');
    return new Set(ids.map(Number));
  }

  function rejectListId(params: URLSearchParams): void {
    if (params.has('listId')) throw new SimulatorError('1013', 'Static list not found');
  }

  function apiOrigin(method: string, requestId: string): MarketoChangeOrigin {
    return { kind: 'api', user: apiUser, method, requestId };
  }

  function queryLeads(ctx: HandlerContext): Envelope {
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
    const fields = requestedFields(ctx.params, defaultLeadReadFields);
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

  function syncLeads(ctx: HandlerContext): Envelope {
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
    const origin = apiOrigin('syncLead', ctx.requestId);
    return { result: input.map((record: unknown) => syncRecord(record, action, lookupField, partitionName, origin)) };
  }

  function deleteLeads(ctx: HandlerContext): Envelope {
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
    const origin = apiOrigin('deleteLead', ctx.requestId);
    return {
      result: ids.map((id) => {
        if (typeof id !== 'number' || !Number.isSafeInteger(id)) return { status: 'skipped', reasons: [{ code: '1003', message: 'Invalid data' }] };
        return store.remove(id, origin) ? { id, status: 'deleted' } : { id, status: 'skipped', reasons: [{ code: '1004', message: 'Lead not found' }] };
      }),
    };
  }

  let mergeLogsDeleteLead = options.mergeLogsDeleteLead ?? false;
  const MAX_MERGE_LOSERS = 25;

  /** POST /rest/v1/leads/{winner}/merge.json?leadId=|leadIds= (reference marketo §11): no `result` on success. */
  function mergeLeads(ctx: HandlerContext, match: RegExpExecArray): Envelope {
    const winnerId = Number(match[1]);
    const raw = listParam(ctx.params, 'leadIds') ?? listParam(ctx.params, 'leadId');
    if (!raw || raw.length === 0) throw new SimulatorError('701', 'leadId cannot be blank');
    if (raw.length > MAX_MERGE_LOSERS) throw new SimulatorError('1080', `Merge supports at most ${MAX_MERGE_LOSERS} lead ids`);
    if (raw.some((id) => !/^\d+$/.test(id))) throw new SimulatorError('1003', 'Invalid leadIds');
    const losers = [...new Set(raw.map(Number))];
    if (losers.includes(winnerId)) throw new SimulatorError('1003', 'A lead cannot be merged into itself');
    for (const id of [winnerId, ...losers]) if (!store.get(id)) throw new SimulatorError('1004', 'Lead not found');
    store.merge(winnerId, losers, apiOrigin('mergeLead', ctx.requestId), { loserDeleteActivities: mergeLogsDeleteLead });
    return {};
  }

  const staticLists = createStaticLists({
    fail: (code, message) => {
      throw new SimulatorError(code, message);
    },
    project: (id, fields) => {
      const lead = store.get(id);
      return lead ? project(lead, fields) : null;
    },
    requestedFields,
    parseBatchSize,
  });

  const routes: Route[] = [
    ...staticLists.routes,
    { endpoint: 'leads.merge', pattern: /^\/rest\/v1\/leads\/(\d+)\/merge\.json$/, methods: { POST: mergeLeads }, jsonBody: true },
    { endpoint: 'leads.query', postEndpoint: 'leads.sync', pattern: /^\/rest\/v1\/leads\.json$/, methods: { GET: queryLeads, POST: syncLeads }, jsonBody: true },
    { endpoint: 'leads.delete', pattern: /^\/rest\/v1\/leads\/delete\.json$/, methods: { POST: deleteLeads }, jsonBody: true },
    {
      endpoint: 'lead.get',
      pattern: /^\/rest\/v1\/lead\/(\d+)\.json$/,
      methods: {
        GET: (ctx, match) => {
          const lead = store.get(Number(match[1]));
          return { result: lead ? [project(lead, requestedFields(ctx.params, defaultLeadReadFields))] : [] };
        },
      },
    },
    {
      endpoint: 'leads.describe',
      pattern: /^\/rest\/v1\/leads\/describe\.json$/,
      methods: {
        GET: () => ({
          result: store.fields.map((f) => ({
            id: f.id,
            displayName: f.displayName,
            dataType: f.dataType,
            ...(f.length === undefined ? {} : { length: f.length }),
            rest: { name: f.name, readOnly: f.readOnly },
            soap: { name: f.soapName, readOnly: f.readOnly },
          })),
        }),
      },
    },
    {
      endpoint: 'leads.describe2',
      pattern: /^\/rest\/v1\/leads\/describe2\.json$/,
      methods: {
        GET: () => ({
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
        }),
      },
    },
    {
      endpoint: 'activities.pagingtoken',
      pattern: /^\/rest\/v1\/activities\/pagingtoken\.json$/,
      methods: {
        GET: (ctx) => {
          const raw = ctx.params.get('sinceDatetime');
          if (raw === null || raw === '') throw new SimulatorError('701', 'sinceDatetime cannot be blank');
          const sinceMs = parseSinceDatetime(raw);
          if (sinceMs === undefined) throw new SimulatorError('704', 'Invalid date format');
          return { nextPageToken: encodeActivityToken(store.positionAt(sinceMs), sinceMs) };
        },
      },
    },
    {
      endpoint: 'activities.leadchanges',
      pattern: /^\/rest\/v1\/activities\/leadchanges\.json$/,
      methods: {
        GET: (ctx) => {
          const fields = listParam(ctx.params, 'fields');
          if (!fields) throw new SimulatorError('701', 'fields cannot be blank');
          for (const name of fields) if (!store.field(name)) throw new SimulatorError('1006', `Field '${name}' not found`);
          rejectListId(ctx.params);
          const leadIds = leadIdsParam(ctx.params);
          const wanted = new Set(fields);
          return feedPage(
            ctx.params,
            (a) =>
              (leadIds === undefined || leadIds.has(a.leadId)) &&
              (a.typeId === ActivityType.newLead || (a.typeId === ActivityType.changeDataValue && a.field !== undefined && wanted.has(a.field.name))),
            'leadchange',
          );
        },
      },
    },
    {
      endpoint: 'activities.deletedleads',
      pattern: /^\/rest\/v1\/activities\/deletedleads\.json$/,
      methods: { GET: (ctx) => feedPage(ctx.params, (a) => a.typeId === ActivityType.deleteLead, 'deleted') },
    },
    {
      endpoint: 'activities',
      pattern: /^\/rest\/v1\/activities\.json$/,
      methods: {
        GET: (ctx) => {
          const typeIds = listParam(ctx.params, 'activityTypeIds');
          if (!typeIds) throw new SimulatorError('701', 'activityTypeIds cannot be blank');
          if (typeIds.length > 10) throw new SimulatorError('1003', 'activityTypeIds exceeds the maximum of 10');
          if (typeIds.some((id) => !/^\d+$/.test(id))) throw new SimulatorError('1003', 'Invalid activityTypeIds');
          rejectListId(ctx.params);
          const leadIds = leadIdsParam(ctx.params);
          const types = new Set(typeIds.map(Number));
          return feedPage(ctx.params, (a) => types.has(a.typeId) && (leadIds === undefined || leadIds.has(a.leadId)), 'generic');
        },
      },
    },
    { endpoint: 'activities.types', pattern: /^\/rest\/v1\/activities\/types\.json$/, methods: { GET: () => ({ result: activityTypes }) } },
    {
      endpoint: 'stats.usage',
      pattern: /^\/rest\/v1\/stats\/usage\.json$/,
      methods: {
        GET: () => {
          rollDay();
          const date = new Date(dailyDay * DAY_MS).toISOString().slice(0, 10);
          return { result: [{ date, total: dailyUsed, users: [{ userId: apiUser, count: dailyUsed }] }] };
        },
      },
    },
  ];

  function rollDay(): void {
    const day = centralDay(now());
    if (day !== dailyDay) {
      dailyDay = day;
      dailyUsed = 0;
    }
  }

  function sendEnvelope(res: Response, requestId: string, envelope: Envelope): void {
    const body: Record<string, unknown> = { requestId, success: true };
    const empty = !envelope.result || envelope.result.length === 0;
    if (envelope.result && !(empty && omitEmptyResult)) body['result'] = envelope.result;
    else if (envelope.result) body['warnings'] = ['No assets found for the given search criteria.'];
    if (envelope.moreResult !== undefined) body['moreResult'] = envelope.moreResult;
    if (envelope.nextPageToken !== undefined) body['nextPageToken'] = envelope.nextPageToken;
    res.status(200).json(body);
  }

  function sendError(res: Response, requestId: string, code: string, message: string): void {
    res.status(200).json({ requestId, success: false, errors: [{ code, message }] });
  }

  function pickFault(endpoint: MarketoEndpoint): MarketoFault | undefined {
    for (const fault of faults) {
      if (fault.endpoint !== undefined && fault.endpoint !== endpoint) continue;
      if (fault.type === 'after-apply' && endpoint !== 'leads.sync') continue;
      if (fault.rate !== undefined && random() >= fault.rate) continue;
      if (fault.times !== undefined) {
        fault.times--;
        if (fault.times <= 0) faults = faults.filter((f) => f !== fault);
      }
      return fault;
    }
    return undefined;
  }

  function admitRate(): string | undefined {
    const at = now();
    while (windowHead < windowTimes.length && (windowTimes[windowHead] ?? 0) <= at - limits.windowMs) windowHead++;
    if (windowHead > 1024 && windowHead * 2 > windowTimes.length) {
      windowTimes = windowTimes.slice(windowHead);
      windowHead = 0;
    }
    if (windowTimes.length - windowHead >= limits.callsPerWindow) {
      return `Max rate limit '${limits.callsPerWindow}' exceeded with in '${Math.round(limits.windowMs / 1000)}' secs`;
    }
    return undefined;
  }

  function countCall(): void {
    windowTimes.push(now());
    dailyUsed++;
    counters.counted++;
  }

  async function handleRest(req: Request, res: Response): Promise<void> {
    const requestId = nextRequestId();
    counters.total++;
    if (Buffer.byteLength(req.originalUrl) > MAX_URI_BYTES) {
      count('unknown', '414');
      res.status(414).type('text/html').send('<html><body><h1>414 Request-URI Too Large</h1></body></html>');
      return;
    }
    const url = new URL(req.originalUrl, 'http://simulator.invalid');
    let method = req.method;
    let params = url.searchParams;
    let rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);

    // long GET queries: POST ?_method=GET with the rest of the query string as a form body
    if (method === 'POST' && params.get('_method') === 'GET') {
      if (!req.is('application/x-www-form-urlencoded')) {
        count('unknown', '612');
        sendError(res, requestId, '612', 'Invalid Content Type');
        return;
      }
      params = new URLSearchParams(params);
      params.delete('_method');
      for (const [key, value] of new URLSearchParams(rawBody.toString('utf8'))) params.append(key, value);
      method = 'GET';
      rawBody = Buffer.alloc(0);
    }

    let match: RegExpExecArray | null = null;
    const route = routes.find((r) => (match = r.pattern.exec(url.pathname)) !== null);
    if (!route || !match) {
      count('unknown', '610');
      sendError(res, requestId, '610', 'Requested resource not found');
      return;
    }
    const handler = method === 'GET' || method === 'POST' ? route.methods[method] : undefined;
    const endpoint = method === 'POST' ? (route.postEndpoint ?? route.endpoint) : route.endpoint;
    if (!handler) {
      count(endpoint, '605');
      sendError(res, requestId, '605', 'HTTP Method not supported');
      return;
    }

    const bearer = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
    const token = bearer === undefined ? undefined : tokens.get(bearer);
    if (!token) {
      count(endpoint, '601');
      sendError(res, requestId, '601', 'Access token invalid');
      return;
    }
    if (token.expiresAt <= now()) {
      count(endpoint, '602');
      sendError(res, requestId, '602', 'Access token expired');
      return;
    }

    if (counters.inFlight >= limits.maxConcurrent) {
      count(endpoint, '615');
      sendError(res, requestId, '615', `Concurrent access limit '${limits.maxConcurrent}' reached`);
      return;
    }
    const rateMessage = admitRate();
    if (rateMessage) {
      count(endpoint, '606');
      sendError(res, requestId, '606', rateMessage);
      return;
    }
    rollDay();
    if (dailyUsed >= limits.dailyQuota) {
      count(endpoint, '607');
      sendError(res, requestId, '607', 'Daily quota reached');
      return;
    }

    counters.inFlight++;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        counters.inFlight--;
      }
    };
    res.on('close', release);
    res.on('finish', release);

    const fault = pickFault(endpoint);
    if (!fault || fault.type === 'after-apply' || (fault.type === 'code' && !uncountedCodes.has(fault.code))) countCall();
    if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, latencyMs));
    if (fault && fault.type !== 'after-apply') for (const listener of faultListeners) listener(fault, endpoint);
    if (fault?.type === 'hang') {
      count(endpoint, 'hang');
      return;
    }
    if (fault?.type === 'http') {
      count(endpoint, String(fault.status));
      res.status(fault.status).type('text/html').send(`<html><body><h1>${fault.status}</h1></body></html>`);
      return;
    }
    if (fault?.type === 'code') {
      count(endpoint, fault.code);
      sendError(res, requestId, fault.code, fault.message ?? defaultMessages[fault.code] ?? 'Injected error');
      return;
    }

    let body: unknown;
    if (req.method === 'POST' && rawBody.length > 0 && route.jsonBody) {
      if (!req.is('application/json')) {
        count(endpoint, '612');
        sendError(res, requestId, '612', 'Invalid Content Type');
        return;
      }
      try {
        body = JSON.parse(rawBody.toString('utf8'));
      } catch {
        count(endpoint, '609');
        sendError(res, requestId, '609', 'Invalid JSON');
        return;
      }
    } else if (req.method === 'POST' && method === 'POST' && !req.is('application/json') && req.get('content-type') !== undefined && rawBody.length > 0) {
      count(endpoint, '612');
      sendError(res, requestId, '612', 'Invalid Content Type');
      return;
    }

    try {
      const remotePort = req.socket.remotePort;
      for (const listener of callListeners) listener({ endpoint, phase: 'before', params, body, remotePort });
      const envelope = handler({ params, body, requestId, rawBodyLength: rawBody.length }, match);
      for (const listener of callListeners) listener({ endpoint, phase: 'after', params, body, remotePort, result: envelope.result });
      if (fault?.type === 'after-apply') {
        for (const listener of faultListeners) listener(fault, endpoint);
        count(endpoint, fault.answer);
        if (fault.answer === '604') sendError(res, requestId, '604', defaultMessages['604'] ?? 'Request time-out');
        return;
      }
      count(endpoint, undefined);
      sendEnvelope(res, requestId, envelope);
    } catch (error) {
      if (!(error instanceof SimulatorError)) throw error;
      count(endpoint, error.code);
      sendError(res, requestId, error.code, error.message);
    }
  }

  function handleIdentity(req: Request, res: Response): void {
    counters.identity++;
    const params = new URL(req.originalUrl, 'http://simulator.invalid').searchParams;
    if (params.get('grant_type') !== 'client_credentials') {
      res.status(400).json({ error: 'unsupported_grant_type', error_description: 'Unsupported grant type' });
      return;
    }
    if (params.get('client_id') !== clientId || params.get('client_secret') !== clientSecret) {
      res.status(401).json({ error: 'invalid_client', error_description: 'Bad client credentials' });
      return;
    }
    const at = now();
    let existing = currentToken === undefined ? undefined : tokens.get(currentToken);
    // Marketo hands out the same token until it expires, with its remaining lifetime
    if (!existing || existing.expiresAt - at < 1000 || currentToken === undefined) {
      currentToken = `${randomUUID()}:sim`;
      existing = { expiresAt: at + tokenTtlMs };
      tokens.set(currentToken, existing);
    }
    res.status(200).json({
      access_token: currentToken,
      token_type: 'bearer',
      expires_in: Math.floor((existing.expiresAt - at) / 1000),
      scope: apiUser,
    });
  }

  function uiWrite(values: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, raw] of Object.entries(values)) {
      const field = store.field(key);
      if (!field) throw new Error(`Field '${key}' not found`);
      if (field.readOnly) throw new Error(`Field '${key}' is read-only`);
      const coerced = coerceFieldValue(field, raw);
      if ('reason' in coerced) throw new Error(coerced.reason.message);
      out[key] = coerced.value;
    }
    return out;
  }

  const uiOrigin: MarketoChangeOrigin = { kind: 'ui', user: 'marketer@marketo-simulator.invalid' };

  const admin = {
    clientId,
    clientSecret,
    apiUser,
    store,
    ...staticLists.admin,
    /** creates a person as a Marketo user would (no dedupe; logged as a UI change) */
    createLead(values: Record<string, unknown>): MarketoSimulatorLead {
      return allFieldsOf(store.create(uiWrite(values), uiOrigin));
    },
    /** edits a person in the UI; returns the REST names of the fields that changed */
    updateLead(id: number, values: Record<string, unknown>): string[] {
      if (!store.get(id)) throw new Error(`lead ${id} not found`);
      return store.update(id, uiWrite(values), uiOrigin);
    },
    deleteLead(id: number): boolean {
      return store.remove(id, uiOrigin);
    },
    /** a marketer merges persons in the UI (Marketo's merge rules, as the REST merge) */
    mergeLeads(winnerId: number, loserIds: readonly number[]): void {
      for (const id of [winnerId, ...loserIds]) if (!store.get(id)) throw new Error(`lead ${id} not found`);
      store.merge(winnerId, loserIds, uiOrigin, { loserDeleteActivities: mergeLogsDeleteLead });
    },
    /** whether merged-away persons also show in the deletedleads feed (unconfirmed by Adobe: a switch) */
    setMergeLogsDeleteLead(on: boolean): void {
      mergeLogsDeleteLead = on;
    },
    /** in-process only: hears of each update that changed a person's values (a bench's arrival clock) */
    onLeadUpdated(listener: (id: number) => void): void {
      store.onUpdate(listener);
    },
    getLead(id: number): MarketoSimulatorLead | undefined {
      const lead = store.get(id);
      return lead ? allFieldsOf(lead) : undefined;
    },
    listLeads(page: { offset?: number; limit?: number } = {}): MarketoSimulatorLead[] {
      const offset = page.offset ?? 0;
      const limit = page.limit ?? 100;
      const out: MarketoSimulatorLead[] = [];
      let i = 0;
      for (const lead of store.leads()) {
        if (i++ < offset) continue;
        if (out.length >= limit) break;
        out.push(allFieldsOf(lead));
      }
      return out;
    },
    leadCount: () => store.size(),
    /** bulk load for benchmarks; without activities the change feeds start empty */
    seedLeads(records: Record<string, unknown>[], seedOptions: { recordActivities?: boolean } = {}): number[] {
      return records.map((r) => store.create(uiWrite(r), uiOrigin, { recordActivities: seedOptions.recordActivities ?? false }).id);
    },
    activities(filter: { leadId?: number; typeIds?: number[] } = {}): MarketoRenderedActivity[] {
      return store.activitiesOf(filter).map((a) => renderActivity(a, 'generic'));
    },
    injectFault(fault: MarketoFault): void {
      faults.push({ ...fault });
    },
    clearFaults(): void {
      faults = [];
    },
    /** in-process only: hears each REST call synchronously right before and after it runs (a test's hook) */
    onApiCall(listener: (call: MarketoApiCall) => void): void {
      callListeners.push(listener);
    },
    /** in-process only: hears each injected fault at the moment it takes effect */
    onFault(listener: (fault: MarketoFault, endpoint: MarketoEndpoint) => void): void {
      faultListeners.push(listener);
    },
    setLatency(ms: number): void {
      latencyMs = ms;
    },
    setLimits(next: Partial<MarketoSimulatorLimits>): void {
      Object.assign(limits, next);
    },
    setFeedOptions(next: Partial<MarketoFeedOptions>): void {
      Object.assign(feedOptions, next);
    },
    setOmitEmptyResult(value: boolean): void {
      omitEmptyResult = value;
    },
    /** invalidates every token: the next REST call gets 601, identity mints a new one */
    revokeTokens(): void {
      tokens.clear();
      currentToken = undefined;
    },
    /** makes every token expire now: the next REST call gets 602 */
    expireTokens(): void {
      const at = now();
      for (const token of tokens.values()) token.expiresAt = Math.min(token.expiresAt, at);
    },
    counters(): MarketoSimulatorCounters & { dailyUsed: number } {
      rollDay();
      return structuredClone({ ...counters, dailyUsed });
    },
    resetCounters(): void {
      counters = { total: 0, counted: 0, identity: 0, inFlight: counters.inFlight, byEndpoint: {} };
      windowTimes = [];
      windowHead = 0;
      dailyUsed = 0;
    },
    /** fires a Call Webhook flow step for each lead, as a trigger campaign would */
    async fireWebhook(definition: MarketoWebhookDefinition, leadIds: number[], webhookTokens: MarketoWebhookTokens = {}): Promise<MarketoWebhookCallResult[]> {
      return Promise.all(leadIds.map((id) => webhooks.call(definition, id, webhookTokens)));
    },
    /** empties leads, activities, faults and counters; tokens stay valid */
    reset(): void {
      store.reset();
      staticLists.admin.resetLists();
      faults = [];
      latencyMs = options.latencyMs ?? 0;
      admin.resetCounters();
    },
  };

  const app = express();
  app.disable('x-powered-by');
  app.all('/identity/oauth/token', handleIdentity);
  app.use('/rest', express.raw({ type: () => true, limit: '1mb' }), (req: Request, res: Response, next: NextFunction) => {
    handleRest(req, res).catch(next);
  });
  if (options.adminPrefix !== false) app.use(options.adminPrefix ?? '/__admin', createAdminRouter(admin));
  app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const status = isObject(error) && typeof error['status'] === 'number' ? error['status'] : 500;
    res.status(status).type('text/html').send(`<html><body><h1>${status}</h1></body></html>`);
  });

  return { app, admin };
}

const defaultMessages: Record<string, string> = {
  '601': 'Access token invalid',
  '602': 'Access token expired',
  '603': 'Access denied',
  '604': 'Request time-out',
  '606': "Max rate limit '100' exceeded with in '20' secs",
  '607': 'Daily quota reached',
  '608': 'API Temporarily Unavailable',
  '609': 'Invalid JSON',
  '610': 'Requested resource not found',
  '611': 'System error',
  '612': 'Invalid Content Type',
  '613': 'Invalid Multipart Request',
  '614': 'Invalid Subscription',
  '615': "Concurrent access limit '10' reached",
  '713': 'Transient Error',
};

function syntheticLead(i: number): Record<string, unknown> {
  return { email: `person${i}@example.com`, firstName: `First${i}`, lastName: `Last${i}`, company: `Company ${i % 997}` };
}

function createAdminRouter(admin: MarketoSimulatorAdmin): express.Router {
  const router = express.Router();
  router.use(express.json({ limit: '50mb' }));
  const wrap =
    (fn: (req: Request, res: Response) => unknown) =>
    (req: Request, res: Response): void => {
      Promise.resolve()
        .then(() => fn(req, res))
        .then((value) => {
          if (!res.headersSent) res.json(value ?? { ok: true });
        })
        .catch((error: unknown) => {
          if (!res.headersSent) res.status(400).json({ error: error instanceof Error ? error.message : String(error) });
        });
    };
  const body = (req: Request): Record<string, unknown> => (isObject(req.body) ? req.body : {});
  const idParam = (req: Request): number => Number(req.params['id']);

  router.get('/leads', wrap((req) => {
    const query = new URL(req.originalUrl, 'http://simulator.invalid').searchParams;
    return { total: admin.leadCount(), leads: admin.listLeads({ offset: Number(query.get('offset') ?? 0), limit: Number(query.get('limit') ?? 100) }) };
  }));
  router.get('/leads/:id', wrap((req, res) => {
    const lead = admin.getLead(idParam(req));
    if (!lead) res.status(404).json({ error: 'lead not found' });
    return lead;
  }));
  router.post('/leads', wrap((req) => admin.createLead(body(req))));
  router.patch('/leads/:id', wrap((req) => ({ changed: admin.updateLead(idParam(req), body(req)) })));
  router.delete('/leads/:id', wrap((req) => ({ deleted: admin.deleteLead(idParam(req)) })));
  router.post('/leads/:id/merge', wrap((req) => {
    const losers = (body(req) as { loserIds?: unknown }).loserIds;
    if (!Array.isArray(losers) || losers.some((id) => typeof id !== 'number')) throw new Error('loserIds: an array of person ids');
    admin.mergeLeads(idParam(req), losers as number[]);
    return { merged: true };
  }));
  router.post('/seed', wrap((req) => {
    const b = body(req);
    const recordActivities = b['recordActivities'] === true;
    const records = Array.isArray(b['records'])
      ? (b['records'] as Record<string, unknown>[])
      : Array.from({ length: Number(b['count'] ?? 0) }, (_, i) => syntheticLead(admin.leadCount() + i + 1));
    return { ids: admin.seedLeads(records, { recordActivities }).length };
  }));
  router.get('/activities', wrap((req) => {
    const query = new URL(req.originalUrl, 'http://simulator.invalid').searchParams;
    const leadId = query.get('leadId');
    const types = query.get('types');
    return admin.activities({
      ...(leadId ? { leadId: Number(leadId) } : {}),
      ...(types ? { typeIds: types.split(',').map(Number) } : {}),
    });
  }));
  router.post('/faults', wrap((req) => admin.injectFault(body(req) as MarketoFault)));
  router.delete('/faults', wrap(() => admin.clearFaults()));
  router.put('/limits', wrap((req) => admin.setLimits(body(req) as Partial<MarketoSimulatorLimits>)));
  router.put('/latency', wrap((req) => admin.setLatency(Number(body(req)['ms'] ?? 0))));
  router.put('/feed', wrap((req) => admin.setFeedOptions(body(req) as Partial<MarketoFeedOptions>)));
  router.post('/tokens/revoke', wrap(() => admin.revokeTokens()));
  router.post('/tokens/expire', wrap(() => admin.expireTokens()));
  router.get('/counters', wrap(() => admin.counters()));
  router.post('/reset', wrap(() => admin.reset()));
  router.post('/webhooks/fire', wrap((req) => {
    const b = body(req);
    return admin.fireWebhook(
      b['definition'] as MarketoWebhookDefinition,
      Array.isArray(b['leadIds']) ? b['leadIds'].map(Number) : [],
      isObject(b['tokens']) ? (b['tokens'] as MarketoWebhookTokens) : {},
    );
  }));
  return router;
}

export type StartedMarketoSimulator = {
  url: string;
  clientId: string;
  clientSecret: string;
  admin: MarketoSimulatorAdmin;
  close(): Promise<void>;
};

export async function startMarketoSimulator(options: MarketoSimulatorOptions & { port?: number; host?: string } = {}): Promise<StartedMarketoSimulator> {
  const { app, admin } = createMarketoSimulatorApp(options);
  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, (error?: Error) => (error ? reject(error) : resolve(s)));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    clientId: admin.clientId,
    clientSecret: admin.clientSecret,
    admin,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
