// The shapes the Marketo simulator's options, resources, gate and admin share.
import type { MarketoFieldDefinition } from './marketo.fields.ts';

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

/** What a resource handler returns: the REST envelope's result and paging, without requestId/success. */
export type Envelope = { result?: unknown[]; moreResult?: boolean; nextPageToken?: string };

export type HandlerContext = { params: URLSearchParams; body: unknown; requestId: string; rawBodyLength: number };

/**
 * A resource's entry in the router: the path pattern, the handler per verb and the endpoint label
 * counted (and matched by faults); `postEndpoint` labels POST when it differs; `jsonBody` parses a
 * POST body as JSON.
 */
export type Route = {
  endpoint: MarketoEndpoint;
  postEndpoint?: MarketoEndpoint;
  pattern: RegExp;
  methods: Partial<Record<'GET' | 'POST', (ctx: HandlerContext, match: RegExpExecArray) => Envelope>>;
  jsonBody?: boolean;
};

/** A REST error answered as `success: false` with this code (HTTP 200, as Marketo does). */
export class SimulatorError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
