import type { Logger } from 'pino';
import type { z } from 'zod';
import { MarketoApiError } from './marketo.errors.ts';
import { parseResult, type CallSpec, type MarketoCall } from './marketo.transport.ts';
import {
  activitySchema,
  deleteResultSchema,
  describe2Schema,
  describeFieldSchema,
  leadSchema,
  usageSchema,
  type MarketoActivity,
  type MarketoDailyUsage,
  type MarketoEnvelope,
  type MarketoLead,
} from './marketo.schemas.ts';

// The typed REST endpoints the sync uses that do not share calls (those are in marketo.batching.ts):
// each builds its request, runs it through the transport and checks what came back.

/** records one Marketo call may carry (reads and writes) */
export const MAX_BATCH = 300;
const DAY_MS = 86_400_000;

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

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Activity dates come as `...Z` or `...+0000`; both are instants. */
export function parseMarketoDate(value: string): Date {
  return new Date(value.replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
}

export function leadQuery(filterType: string, values: readonly string[], fields: readonly string[] | undefined, nextPageToken?: string): CallSpec {
  return {
    endpoint: 'leads.query',
    method: 'GET',
    path: '/rest/v1/leads.json',
    query: { filterType, filterValues: values.join(','), fields: fields?.join(','), batchSize: String(MAX_BATCH), nextPageToken },
  };
}

/** Reads the pages after `first` into `into`, by id. */
export async function followLeadPages(call: MarketoCall, first: MarketoEnvelope, again: (nextPageToken: string) => CallSpec, into: Map<number, MarketoLead>): Promise<void> {
  let envelope = first;
  for (;;) {
    for (const lead of parseResult(leadSchema, envelope, 'leads.query')) into.set(lead.id, lead);
    if (!envelope.moreResult || envelope.nextPageToken === undefined) return;
    envelope = await call(again(envelope.nextPageToken));
  }
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

type FeedParams = { nextPageToken: string; batchSize?: number; leadIds?: readonly number[] };
type LeadChangesParams = FeedParams & { fields: readonly string[] };
type ActivitiesParams = FeedParams & { activityTypeIds: readonly number[] };

/** The activity feeds: a paging token for an instant, then pages of changes, deletions, activities. */
export function createActivityEndpoints(call: MarketoCall, logger: Logger | undefined) {
  const batchSize = (params: FeedParams) => String(Math.min(params.batchSize ?? MAX_BATCH, MAX_BATCH));

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

  const getLeadChanges = (params: LeadChangesParams) =>
    activityPage('activities.leadchanges', '/rest/v1/activities/leadchanges.json', params.nextPageToken, {
      fields: params.fields.join(','),
      batchSize: batchSize(params),
      leadIds: params.leadIds?.join(','),
    });
  const getDeletedLeads = (params: Omit<FeedParams, 'leadIds'>) =>
    activityPage('activities.deletedleads', '/rest/v1/activities/deletedleads.json', params.nextPageToken, { batchSize: batchSize(params) });
  const getActivities = (params: ActivitiesParams) =>
    activityPage('activities', '/rest/v1/activities.json', params.nextPageToken, {
      activityTypeIds: params.activityTypeIds.join(','),
      batchSize: batchSize(params),
      leadIds: params.leadIds?.join(','),
    });

  return {
    async getPagingToken(since: Date): Promise<string> {
      const query = { sinceDatetime: since.toISOString() };
      const envelope = await call({ endpoint: 'activities.pagingtoken', method: 'GET', path: '/rest/v1/activities/pagingtoken.json', query });
      if (!envelope.nextPageToken) {
        throw new MarketoApiError('permanent', { message: 'paging token missing from response', endpoint: 'activities.pagingtoken', httpStatus: 200 });
      }
      return envelope.nextPageToken;
    },
    getLeadChanges,
    getDeletedLeads,
    getActivities,
    iterateLeadChanges: (params: LeadChangesParams & { maxEmptyPages?: number }) =>
      followPages((token) => getLeadChanges({ ...params, nextPageToken: token }), params.nextPageToken, params.maxEmptyPages),
    iterateDeletedLeads: (params: { nextPageToken: string; batchSize?: number; maxEmptyPages?: number }) =>
      followPages((token) => getDeletedLeads({ ...params, nextPageToken: token }), params.nextPageToken, params.maxEmptyPages),
    iterateActivities: (params: ActivitiesParams & { maxEmptyPages?: number }) =>
      followPages((token) => getActivities({ ...params, nextPageToken: token }), params.nextPageToken, params.maxEmptyPages),
  };
}

/** Lead fields as describe2 (or, where it is not offered, describe) reports them. */
async function loadFieldDescriptions(call: MarketoCall, logger: Logger | undefined): Promise<MarketoFieldDescription[]> {
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

/** Lead reads by any filter or static list, deletes, field descriptions and the instance's usage. */
export function createLeadEndpoints(call: MarketoCall, options: { now: () => number; logger: Logger | undefined }) {
  let describeCache: { at: number; fields: Promise<MarketoFieldDescription[]> } | undefined;

  return {
    async getLeadsByFilter(filterType: string, values: readonly string[], fields?: readonly string[]): Promise<MarketoLead[]> {
      const leads = new Map<number, MarketoLead>();
      for (const part of chunk([...new Set(values)], MAX_BATCH)) {
        const first = await call(leadQuery(filterType, part, fields));
        await followLeadPages(call, first, (token) => leadQuery(filterType, part, fields, token), leads);
      }
      return [...leads.values()];
    },

    /**
     * One page of a static list (Get Leads by List Id, reference §14): 300 members at most, in the
     * list's order; Adobe's answer carries `nextPageToken` (no `moreResult`): none, or a page with no
     * members, ends the list.
     */
    async getListLeads(listId: number, fields: readonly string[], nextPageToken: string | null, batchSize = MAX_BATCH): Promise<{ leads: MarketoLead[]; nextPageToken: string | null }> {
      const endpoint = 'lists.leads';
      const envelope = await call({
        endpoint,
        method: 'GET',
        path: `/rest/v1/lists/${listId}/leads.json`,
        query: { fields: fields.join(','), batchSize: String(Math.min(batchSize, MAX_BATCH)), nextPageToken: nextPageToken ?? undefined },
      });
      const leads = parseResult(leadSchema, envelope, endpoint);
      return { leads, nextPageToken: leads.length > 0 && envelope.nextPageToken ? envelope.nextPageToken : null };
    },

    async deleteLeads(ids: readonly number[]): Promise<MarketoDeleteResult[]> {
      const results: MarketoDeleteResult[] = [];
      for (const part of chunk(ids, MAX_BATCH)) {
        const body = { input: part.map((id) => ({ id })) };
        const envelope = await call({ endpoint: 'leads.delete', method: 'POST', path: '/rest/v1/leads/delete.json', body, recordsSent: part.length });
        results.push(...parseResult(deleteResultSchema, envelope, 'leads.delete'));
      }
      return results;
    },

    /** Cached for a day (Adobe: describe results are cacheable for a day or more). */
    describeLeadFields(opts: { refresh?: boolean } = {}): Promise<MarketoFieldDescription[]> {
      if (!describeCache || opts.refresh || options.now() - describeCache.at > DAY_MS) {
        const fields = loadFieldDescriptions(call, options.logger);
        describeCache = { at: options.now(), fields };
        fields.catch(() => {
          if (describeCache?.fields === fields) describeCache = undefined;
        });
      }
      return describeCache.fields;
    },

    async getDailyUsage(): Promise<MarketoDailyUsage[]> {
      const envelope = await call({ endpoint: 'stats.usage', method: 'GET', path: '/rest/v1/stats/usage.json' });
      return parseResult(usageSchema, envelope, 'stats.usage');
    },
  };
}
