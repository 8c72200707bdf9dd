import type { Caller } from '../auth/caller.ts';
import type { ApiTokenService } from '../auth/tokens.ts';
import type { ConsoleSessions } from '../console/session.ts';
import type { PrismaClient } from '../db/generated/client.ts';
import type { ConnectorHealth } from '../http/health.ts';
import type { Logger } from '../logger.ts';
import type { RateLimiter } from '../security/rate-limit.ts';
import type { Suppressions } from '../security/suppression.ts';
import type { LinkedEntity } from '../sync/policy.ts';
import type { Side } from '../sync/merge.ts';
import type { Loaders } from './loaders.ts';

/** A field mapping as an admin submits it; validated against both systems before it is stored. */
export interface FieldMappingDraft {
  entity: LinkedEntity;
  canonicalField: string;
  marketoField: string;
  dynamicsAttribute: string;
  direction: 'BOTH' | 'MARKETO_TO_DYNAMICS' | 'DYNAMICS_TO_MARKETO';
  /** null: the entity's rule (lead -> Marketo wins, contact -> Dynamics wins) */
  collisionWinner: Side | null;
  enabled: boolean;
  /** Dynamics option value -> Marketo string, for choice columns */
  valueMap: Record<string, string> | null;
}

export type FieldMappingValidation = { ok: true } | { ok: false; reason: string };

/**
 * What the API asks the engine and the sweep to do. Plain async functions, so the composition
 * root wires the real engine and tests pass small fakes. Expected refusals are values; a throw is
 * a bug and reaches the caller as a masked "Unexpected error".
 */
export interface SyncActions {
  /** enqueue an OPERATOR re-sync of one person (through the normal conflict-safe path) */
  requestPersonSync(marketoId: number): Promise<{ eventId: string }>;
  /** run a sweep now on the leader; runId null when none was started (message says why) */
  requestSweep(): Promise<{ runId: string | null; message: string }>;
  /** re-apply a collision's losing value on purpose, keeping the named side's value */
  resolveCollision(activityId: string, keep: Side): Promise<{ ok: boolean; error?: string | undefined }>;
  /** checks a mapping against both systems' live metadata and the sync user's access */
  validateFieldMapping(draft: FieldMappingDraft): Promise<FieldMappingValidation>;
  /** the next sweep copies this field for every link of the entity, from the winning side */
  scheduleBackfill(entity: LinkedEntity, canonicalField: string): Promise<void>;
  /** after a mapping was stored: drop cached mappings of the entity (MappingService.invalidate) */
  fieldMappingChanged?: (entity: LinkedEntity) => void;
  /** queues a Batch Sync Person of a Marketo static list (sync/batch-sync-person.ts); its id */
  startBatchSyncPerson?: (request: { listId: number; entity: LinkedEntity; assignTo: string | null; requestedBy: string }) => Promise<{ batchId: string }>;
  /** stops a running batch (between two persons of its page, at the next lease heartbeat); false when it was not running */
  cancelBatchSyncPerson?: (batchId: string) => Promise<boolean>;
}

import type { IntakeStats } from '../inbox/intake.ts';

export interface ApiUsage {
  marketo: { callsToday: number; dailyQuota: number };
  dynamics: { calls: number };
}

export interface GraphQLDeps {
  prisma: PrismaClient;
  logger: Logger;
  /** every request carries the secret of one of these (see src/auth/tokens.ts) */
  tokens: ApiTokenService;
  /** serve GraphiQL on GET /graphql from a browser (outside production) */
  graphiql: boolean;
  /** the service's production flag: errors carry no details (no stack traces) in production */
  production?: boolean;
  /** while no API token exists: how to create the first, added to every 401 */
  firstTokenHint?: () => Promise<string | undefined>;
  actions: SyncActions;
  /** per connector name (marketo, dynamics); implementations cache, like /readyz probes */
  connectorHealth(): Promise<Record<string, ConnectorHealth>>;
  apiUsage(): Promise<ApiUsage>;
  /** this replica's bounded webhook intake: what waits to be stored, and what was refused */
  intakeStats?(): IntakeStats;
  /** largest request body accepted, in bytes; default 256 KiB */
  bodyLimitBytes?: number;
  /** where the handler is mounted; default /graphql */
  endpoint?: string;
  limits?: Partial<GraphQLLimits>;
  /** the operator console's cookie sessions; requests without a bearer token may use one */
  sessions?: ConsoleSessions;
  /** live reads for the console's person view and field access (the composition root wires them) */
  live?: LiveReads;
  /** forgetPerson's suppression list and the record leases it erases under */
  erasure: { suppressions: Suppressions; owner: string; leaseMs: number };
  /**
   * per token (VENDOR_READS_PER_TOKEN_PER_MIN): the calls that spend vendor quota on a read
   * (fieldLineage's live reads, refreshFieldAccess); absent: unlimited (tests)
   */
  vendorReads?: RateLimiter;
}

/** What the console shows "now" from both systems, not from the sync's memory. */
export interface LiveReads {
  /** both records of a link, canonical values by field; a side is null when its record is gone */
  records(link: { marketoId: number; entity: LinkedEntity; dynamicsId: string }): Promise<LiveRecords>;
  /** reads both systems' field metadata again and stores it on the mappings (FieldMapping.access) */
  refreshFieldAccess(entity: LinkedEntity): Promise<void>;
}

export interface LiveRecords {
  marketo: Record<string, unknown> | null;
  dynamics: Record<string, unknown> | null;
  /** the record against the entity's sync filter: false means it is filtered out */
  dynamicsSyncFilter: boolean | null;
  /** why a side could not be read (the vendor's message) */
  errors: string[];
}

/** Query limits (graphql-armor). The person view nests 6 deep; 10 leaves room for fragments. */
export interface GraphQLLimits {
  maxDepth: number;
  /** graphql-armor cost units: 2 per object, 1 per scalar, times 1.5 per level of depth */
  maxCost: number;
  maxAliases: number;
  maxTokens: number;
}

export const defaultLimits: GraphQLLimits = { maxDepth: 10, maxCost: 5000, maxAliases: 15, maxTokens: 2000 };

export interface GraphQLContext {
  deps: GraphQLDeps;
  prisma: PrismaClient;
  /** per request, so batching never leaks data between callers */
  loaders: Loaders;
  /** the token this request authenticated with (bearer or console session); mutations need its scope to be operate */
  caller: Caller;
}
