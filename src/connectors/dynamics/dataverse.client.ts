import type { Logger } from 'pino';
import { sleepMs } from '../../retry.ts';
import type { WriteFence } from '../../sync/ports.ts';
import type { VendorBudget } from '../budget/vendors.ts';
import { createBatchSizer } from './dataverse.batch.ts';
import { createDataverseMetadata, type DataverseAttribute, type DataverseColumnAccess } from './dataverse.metadata.ts';
import { createDataversePacer, type DataverseBudget } from './dataverse.pacing.ts';
import { createDataverseReads, type DataverseChangePage } from './dataverse.reads.ts';
import { defaultDataverseRetry } from './dataverse.retry.ts';
import type { DataverseEntity, DataverseExpansion, DataverseRecord, DataverseValue } from './dataverse.rows.ts';
import type { DataverseIdentity } from './dataverse.schemas.ts';
import { createDataverseTransport, type DataverseEndpointStats } from './dataverse.transport.ts';
import { createDataverseWrites, type DataverseOwner } from './dataverse.writes.ts';

// The Dataverse Web API client, in layers: the transport (dataverse.transport.ts: the token, one
// HTTP exchange, the answer's status typed as an error, retries by the table of dataverse.retry.ts)
// sends what the pacer admits (dataverse.pacing.ts: the deployment's budget, the 429 pause and slow
// restart); reads and writes of concurrent callers share requests (dataverse.reads.ts: In-filter
// queries; dataverse.writes.ts: $batch, sized by dataverse.batch.ts); dataverse.metadata.ts answers
// who the sync user is and what it may do. This file only puts them together.

export { parseRetryAfter } from '../../retry.ts';
export { dataverseEntitySets, quote, type DataverseEntity, type DataverseExpansion, type DataverseRecord, type DataverseValue } from './dataverse.rows.ts';
export type { DataverseAttribute, DataverseColumnAccess } from './dataverse.metadata.ts';
export type { DataverseChangePage } from './dataverse.reads.ts';
export type { DataverseEndpointStats } from './dataverse.transport.ts';
export type { DataverseOwner } from './dataverse.writes.ts';

export type DataverseClientOptions = {
  /** environment URL, e.g. https://contoso.crm.dynamics.com (Web API lives under /api/data/v9.2/) */
  url: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** default https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token */
  tokenUrl?: string;
  fetch?: typeof fetch;
  /** clock in epoch ms; used for token expiry and the 429 pause */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  logger?: Logger;
  /** per HTTP call; default 120000 (the platform aborts a message after 2 minutes) */
  timeoutMs?: number;
  /**
   * false: creates ask for the org's duplicate rules (`MSCRM.SuppressDuplicateDetection: false`),
   * and one they match is refused (0x80040333). Default true, the Web API's own default.
   */
  suppressDuplicateDetection?: boolean;
  /** odata.maxpagesize; default 5000 (the platform cap) */
  maxPageSize?: number;
  /** the share of the service protection limits this client spends (see dataverse.pacing.ts) */
  budget?: DataverseBudget;
  /** this replica's slice of the deployment's Dataverse budget (src/connectors/budget/); without it the client holds `budget` whole */
  sharedBudget?: VendorBudget;
  /** operations in the first $batch of writes; default 10 (Microsoft's advice), grows while batches are fast */
  initialBatchSize?: number;
  /** a $batch taking longer than this shrinks the next; default 10,000 ms */
  batchTargetMs?: number;
  /** longest request URL sent; longer reads are split. Default 16,384 (Dataverse allows 32 KB) */
  maxUrlLength?: number;
  /** retries of one call after 5xx/network/timeout; default 3 */
  transientRetries?: number;
  /** retries of one call after 429; default 10 (each waits the Retry-After the server asked for) */
  rateLimitRetries?: number;
  /** first backoff for transient retries in ms, doubled each time; default 500 */
  retryBaseDelayMs?: number;
  /** ids per $filter when reading many rows by id; default: as many as the URL length allows */
  idChunkSize?: number;
};

export type DataverseClientStats = {
  endpoints: Record<string, DataverseEndpointStats>;
  totalCalls: number;
  totalErrors: number;
  /** requests answered 429 (the older name of `throttled`) */
  rateLimitedPauses: number;
  tokenRequests: number;
  /** requests answered 429 */
  throttled: number;
  /** throttling episodes (each logged once) */
  throttlingEpisodes: number;
  /** $batch requests sent and the operations they carried */
  batches: number;
  batchOperations: number;
  /** operations the next $batch of writes may carry */
  batchSize: number;
};

export type DataverseClient = {
  readonly apiUrl: string;
  /** the sync user's identity; fetched once and cached (echo suppression compares against userId) */
  whoAmI(): Promise<DataverseIdentity>;
  getRecord(entity: DataverseEntity, id: string, columns: readonly string[]): Promise<DataverseRecord | null>;
  getRecords(entity: DataverseEntity, ids: readonly string[], columns: readonly string[], expand?: readonly DataverseExpansion[]): Promise<DataverseRecord[]>;
  findByEmail(entity: DataverseEntity, email: string, columns: readonly string[], expand?: readonly DataverseExpansion[]): Promise<DataverseRecord[]>;
  createRecord(
    entity: DataverseEntity,
    values: Record<string, DataverseValue>,
    /** `expand`: the related rows to read back with the created row, in the same $batch */
    options?: { owner?: DataverseOwner; columns?: readonly string[]; expand?: readonly DataverseExpansion[]; fence?: WriteFence | undefined },
  ): Promise<DataverseRecord>;
  updateRecord(
    entity: DataverseEntity,
    id: string,
    values: Record<string, DataverseValue>,
    options?: { etag?: string; columns?: readonly string[]; fence?: WriteFence | undefined },
  ): Promise<DataverseRecord>;
  deleteRecord(entity: DataverseEntity, id: string, options?: { etag?: string }): Promise<void>;
  assignOwner(entity: DataverseEntity, id: string, owner: DataverseOwner): Promise<void>;
  resolveSystemUserId(owner: DataverseOwner): Promise<string>;
  /** Pages of the rows whose lookup column (`_x_value`) holds `id`, e.g. an account's contacts. */
  queryByLookup(entity: DataverseEntity, lookupProperty: string, id: string, columns: readonly string[]): AsyncGenerator<DataverseRecord[], void, undefined>;
  queryModifiedSince(
    entity: DataverseEntity,
    since: Date,
    columns: readonly string[],
  ): AsyncGenerator<DataverseRecord[], void, undefined>;
  trackChanges(
    entity: DataverseEntity,
    columns: readonly string[],
    deltaLink?: string,
  ): AsyncGenerator<DataverseChangePage, void, undefined>;
  getAttributes(entity: DataverseEntity): Promise<DataverseAttribute[]>;
  getColumnAccess(entity: DataverseEntity): Promise<DataverseColumnAccess[]>;
  stats(): DataverseClientStats;
  /** stops the request budget's timers; calls still waiting for it are refused */
  close(): Promise<void>;
};

const API_PATH = '/api/data/v9.2/';

export function createDataverseClient(options: DataverseClientOptions): DataverseClient {
  const baseUrl = options.url.replace(/\/+$/, '');
  const apiUrl = baseUrl + API_PATH;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? sleepMs;
  const pacer = createDataversePacer({
    ...(options.budget ? { budget: options.budget } : {}),
    now,
    sleep,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.sharedBudget ? { shared: options.sharedBudget } : { key: `dataverse:${new URL(options.url).host}:${options.clientId}` }),
  });
  const batchSizer = createBatchSizer({ initial: options.initialBatchSize ?? 10, targetMs: options.batchTargetMs ?? 10_000 });
  const transport = createDataverseTransport({
    baseUrl,
    apiUrl,
    tokenUrl: options.tokenUrl ?? `https://login.microsoftonline.com/${encodeURIComponent(options.tenantId)}/oauth2/v2.0/token`,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    fetch: options.fetch ?? fetch,
    now,
    sleep,
    timeoutMs: options.timeoutMs ?? 120_000,
    retry: {
      transientRetries: options.transientRetries ?? defaultDataverseRetry.transientRetries,
      rateLimitRetries: options.rateLimitRetries ?? defaultDataverseRetry.rateLimitRetries,
      retryBaseDelayMs: options.retryBaseDelayMs ?? defaultDataverseRetry.retryBaseDelayMs,
    },
    pacer,
    shrinkBatch: () => batchSizer.shrink(),
  });
  const reads = createDataverseReads(transport.call, {
    apiUrl,
    maxPageSize: Math.min(options.maxPageSize ?? 5000, 5000),
    maxUrlLength: options.maxUrlLength ?? 16_384,
    idChunkSize: options.idChunkSize,
  });
  const metadata = createDataverseMetadata(transport.call);
  const writes = createDataverseWrites(transport.call, { apiUrl, now, batchSizer, getRecord: (entity, id, columns) => reads.getRecord(entity, id, columns), resolveSystemUserId: metadata.resolveSystemUserId, suppressDuplicateDetection: options.suppressDuplicateDetection !== false });
  const { counted, ...writeEndpoints } = writes;
  return {
    apiUrl,
    ...metadata,
    ...reads,
    ...writeEndpoints,
    stats() {
      const pacing = pacer.stats();
      return {
        ...transport.stats(),
        rateLimitedPauses: pacing.throttled,
        throttled: pacing.throttled,
        throttlingEpisodes: pacing.episodes,
        ...counted(),
        batchSize: batchSizer.size(),
      };
    },
    close: () => pacer.stop(),
  };
}
