// The activity log: paging tokens, the lead-change and deleted-lead feeds, activities by type and
// the type list (reference marketo §4).
import { decodeActivityToken, encodeActivityToken } from '../marketo.paging.ts';
import { ActivityType, isoSeconds, type MarketoChangeOrigin, type StoredActivity } from '../marketo.store.ts';
import type { MarketoSim } from '../marketo.state.ts';
import { SimulatorError, type Envelope, type HandlerContext, type MarketoRenderedActivity, type Route } from '../marketo.types.ts';
import { leadIdsParam, listParam, parseBatchSize } from './params.ts';

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

export function renderActivity(activity: StoredActivity, style: 'leadchange' | 'deleted' | 'generic'): MarketoRenderedActivity {
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


function feedPage(sim: MarketoSim, params: URLSearchParams, match: (a: StoredActivity) => boolean, style: 'leadchange' | 'deleted' | 'generic'): Envelope {
  const raw = params.get('nextPageToken');
  if (raw === null || raw === '') throw new SimulatorError('701', 'nextPageToken cannot be blank');
  const token = decodeActivityToken(raw);
  if (!token) throw new SimulatorError('1003', 'Invalid nextPageToken');
  const batchSize = parseBatchSize(params);
  if (sim.feedOptions.emptyPageRate > 0 && sim.random() < sim.feedOptions.emptyPageRate) {
    return { result: [], moreResult: true, nextPageToken: encodeActivityToken(token.position, token.sinceMs) };
  }
  const page = sim.store.feed({ position: Math.max(token.position, 0), sinceMs: token.sinceMs, batchSize, scanBlock: sim.feedOptions.scanBlock, match });
  let next = page.nextPosition;
  if (page.items.length >= 2 && sim.feedOptions.duplicateRate > 0 && sim.random() < sim.feedOptions.duplicateRate) {
    next = (page.items[page.items.length - 1]?.id ?? next + 1) - 1;
  }
  return {
    result: page.items.map((a) => renderActivity(a, style)),
    moreResult: page.moreResult || next < page.nextPosition,
    nextPageToken: encodeActivityToken(next, token.sinceMs),
  };
}


function rejectListId(params: URLSearchParams): void {
  if (params.has('listId')) throw new SimulatorError('1013', 'Static list not found');
}

function pagingToken(sim: MarketoSim, ctx: HandlerContext): Envelope {
  const raw = ctx.params.get('sinceDatetime');
  if (raw === null || raw === '') throw new SimulatorError('701', 'sinceDatetime cannot be blank');
  const sinceMs = parseSinceDatetime(raw);
  if (sinceMs === undefined) throw new SimulatorError('704', 'Invalid date format');
  return { nextPageToken: encodeActivityToken(sim.store.positionAt(sinceMs), sinceMs) };
}

function leadChanges(sim: MarketoSim, ctx: HandlerContext): Envelope {
  const fields = listParam(ctx.params, 'fields');
  if (!fields) throw new SimulatorError('701', 'fields cannot be blank');
  for (const name of fields) if (!sim.store.field(name)) throw new SimulatorError('1006', `Field '${name}' not found`);
  rejectListId(ctx.params);
  const leadIds = leadIdsParam(ctx.params);
  const wanted = new Set(fields);
  return feedPage(
    sim,
    ctx.params,
    (a) =>
      (leadIds === undefined || leadIds.has(a.leadId)) &&
      (a.typeId === ActivityType.newLead || (a.typeId === ActivityType.changeDataValue && a.field !== undefined && wanted.has(a.field.name))),
    'leadchange',
  );
}

function activitiesOfTypes(sim: MarketoSim, ctx: HandlerContext): Envelope {
  const typeIds = listParam(ctx.params, 'activityTypeIds');
  if (!typeIds) throw new SimulatorError('701', 'activityTypeIds cannot be blank');
  if (typeIds.length > 10) throw new SimulatorError('1003', 'activityTypeIds exceeds the maximum of 10');
  if (typeIds.some((id) => !/^\d+$/.test(id))) throw new SimulatorError('1003', 'Invalid activityTypeIds');
  rejectListId(ctx.params);
  const leadIds = leadIdsParam(ctx.params);
  const types = new Set(typeIds.map(Number));
  return feedPage(sim, ctx.params, (a) => types.has(a.typeId) && (leadIds === undefined || leadIds.has(a.leadId)), 'generic');
}

export function activityRoutes(sim: MarketoSim): Route[] {
  return [
    { endpoint: 'activities.pagingtoken', pattern: /^\/rest\/v1\/activities\/pagingtoken\.json$/, methods: { GET: (ctx) => pagingToken(sim, ctx) } },
    { endpoint: 'activities.leadchanges', pattern: /^\/rest\/v1\/activities\/leadchanges\.json$/, methods: { GET: (ctx) => leadChanges(sim, ctx) } },
    {
      endpoint: 'activities.deletedleads',
      pattern: /^\/rest\/v1\/activities\/deletedleads\.json$/,
      methods: { GET: (ctx) => feedPage(sim, ctx.params, (a) => a.typeId === ActivityType.deleteLead, 'deleted') },
    },
    { endpoint: 'activities', pattern: /^\/rest\/v1\/activities\.json$/, methods: { GET: (ctx) => activitiesOfTypes(sim, ctx) } },
    { endpoint: 'activities.types', pattern: /^\/rest\/v1\/activities\/types\.json$/, methods: { GET: () => ({ result: activityTypes }) } },
  ];
}
