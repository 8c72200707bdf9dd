import type { Logger } from 'pino';
import type { VendorBudget } from '../budget/vendors.ts';
import { createMarketoBatching, type MarketoFill } from './marketo.batching.ts';
import { createActivityEndpoints, createLeadEndpoints } from './marketo.endpoints.ts';
import { createMarketoPacer, type MarketoLimits } from './marketo.pacing.ts';
import { defaultMarketoRetry } from './marketo.retry.ts';
import { createMarketoTransport, type MarketoClientStats } from './marketo.transport.ts';

// The Marketo REST client, in layers: the transport (marketo.transport.ts: the token, one HTTP
// exchange, Marketo's errors typed, retries by the table of marketo.retry.ts) sends what the pacer
// admits (marketo.pacing.ts: the deployment's budget, and the holds a 606 or 607 puts on every
// caller); calls of concurrent callers are shared (marketo.batching.ts); the typed endpoints
// (marketo.endpoints.ts) build requests and check answers. This file only puts them together.

export { MAX_BATCH, parseMarketoDate, type MarketoActivityPage, type MarketoDeleteResult, type MarketoFieldDescription } from './marketo.endpoints.ts';
export { marketoDripPlan } from './marketo.pacing.ts';
export type { MarketoSyncAction, MarketoSyncResult } from './marketo.batching.ts';
export type { MarketoClientStats, MarketoEndpointStats } from './marketo.transport.ts';

export type MarketoClientOptions = {
  /** instance host, e.g. https://123-ABC-456.mktorest.com (REST under /rest, token under /identity) */
  baseUrl: string;
  clientId: string;
  clientSecret: string;
  fetch?: typeof fetch;
  /** epoch ms; token expiry and the daily-quota day */
  now?: () => number;
  logger?: Logger;
  limits?: MarketoLimits;
  retry?: {
    /** retries after 604/608/611/614/713, HTTP 5xx, network errors and timeouts; default 4 */
    transientRetries?: number;
    /** retries after 606/615; default 12 (about three minutes of backoff, enough to ride out a storm) */
    rateLimitRetries?: number;
    /** first transient backoff in ms, doubled per retry, jittered; default 500 */
    baseDelayMs?: number;
    /** first 606/615 backoff in ms; default 2000 (Adobe: back off at least a few seconds, up to 20 s) */
    rateLimitDelayMs?: number;
    /** cap of one backoff; default 20000 (a full rate window) */
    maxDelayMs?: number;
  };
  /** per HTTP call; default per endpoint as Marketo documents (Sync Leads 90 s, queries 60 s, paging token 300 s, others 30 s) */
  timeoutMs?: number;
  /** renew the token this long before it expires; default 60000 */
  tokenRefreshSkewMs?: number;
  /**
   * this replica's slice of the deployment's Marketo budget (src/connectors/budget/; the service
   * passes its coordinator's). Without it the client holds `limits` whole, alone.
   */
  budget?: VendorBudget;
  /**
   * how long a part-full read or write may wait for a burst or the call feeding it to fill it (see
   * FillPolicy; creates wait twice as long); default 1000 ms, the rate measured over 1000 ms;
   * `false` sends every call as soon as it is dispatched
   */
  fill?: MarketoFill;
};

export type MarketoClient = ReturnType<typeof createMarketoClient>;

export function createMarketoClient(options: MarketoClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '').replace(/\/rest$/, '');
  const now = options.now ?? Date.now;
  const logger = options.logger;
  const pacer = createMarketoPacer({ host: new URL(baseUrl).host, limits: options.limits, budget: options.budget, now });
  const transport = createMarketoTransport({
    baseUrl,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    fetch: options.fetch ?? fetch,
    now,
    logger,
    timeoutMs: options.timeoutMs,
    tokenRefreshSkewMs: options.tokenRefreshSkewMs ?? 60_000,
    retry: { ...defaultMarketoRetry, ...withoutUndefined(options.retry ?? {}) },
    pacer,
  });
  return {
    ...createMarketoBatching(transport.call, options.fill),
    ...createLeadEndpoints(transport.call, { now, logger }),
    ...createActivityEndpoints(transport.call, logger),
    /** the API-only user this client acts as, once a token was issued */
    apiUser: transport.apiUser,
    stats(): MarketoClientStats {
      return { ...transport.stats(), dailyCalls: pacer.dayUsed() };
    },
    /** calls the budget would admit at once now (its bucket); for tests that count instead of timing */
    callsAvailable(): Promise<number> {
      return Promise.resolve(pacer.available());
    },
    /** stops the budget's limiter; calls still queued are rejected */
    close(): Promise<void> {
      pacer.close();
      return Promise.resolve();
    },
  };
}

function withoutUndefined<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as Partial<T>;
}
