import type { Config } from '../config.ts';
import { createInboxIntake, type InboxIntake } from '../inbox/intake.ts';
import type { Logger } from '../logger.ts';
import { createMetrics, type Metrics } from '../observability/metrics.ts';
import { createSweepService, type SweepService } from '../sweep/index.ts';
import { createSyncEngine, type SyncEngine } from '../sync/engine.ts';
import { createBatchSyncRunner, type BatchSyncRunner } from '../sync/batch-sync-person.ts';
import { createFanout } from '../sync/fanout.ts';
import { createMergeHandler } from '../sync/merged-records.ts';
import { createFencing } from '../sync/fence.ts';
import { createLeaseKeeper, type LeaseKeeper } from '../sync/leases.ts';
import { createMappingService, type MappingService } from '../sync/mappings.ts';
import { createOperatorActions, type OperatorActions } from '../sync/operator.ts';
import { createSyncPerson, type SyncPerson } from '../sync/sync-person.ts';
import { createSyncWorker, type SyncWorker } from '../sync/worker.ts';
import type { Closers } from './closers.ts';
import type { Store } from './store.ts';
import type { Vendors } from './vendors.ts';

export interface Engine {
  mappings: MappingService;
  engine: SyncEngine;
  syncPerson: SyncPerson;
  /** the inbox's front door: webhooks and Sync Person queue their events through it */
  intake: InboxIntake;
  metrics: Metrics;
  worker: SyncWorker;
  sweeper: SweepService;
  operator: OperatorActions;
  /** Batch Sync Person: queues lists (`start`) and works through them in the background */
  batchSyncs: BatchSyncRunner;
  /** the replica's one lease heartbeat: records, inbox events, scheduled jobs, batches */
  leases: LeaseKeeper;
}

/**
 * The sync itself: the engine and Sync Person over the vendor ports, the inbox worker that runs
 * queued events through them, the record and event leases it holds while it does, and the sweep
 * that finds what the webhooks missed. Nothing here runs yet except the lease heartbeat, which
 * first takes back what an earlier run of this process left.
 */
export async function assembleEngine(
  config: Config,
  { db, suppressions }: Store,
  vendors: Vendors,
  deps: { logger: Logger; closers: Closers; owner: string; shutdown: AbortSignal; batchSyncPageSize?: number | undefined },
): Promise<Engine> {
  const { logger, owner, shutdown } = deps;
  const { marketo, dynamics, marketoClient, dataverseClient } = vendors;
  const mappings = createMappingService({ db: db.prisma, marketo, dynamics });
  // every vendor write is fenced on the record leases of the work that sends it (sync/fence.ts)
  const fencing = createFencing({ db, leaseMs: config.sync.recordLockMs, shutdown, logger: logger.child({ component: 'fence' }) });
  const engine = createSyncEngine({
    db,
    fencing,
    marketo,
    dynamics,
    mappings,
    logger: logger.child({ component: 'engine' }),
    owner,
    lockLeaseMs: config.sync.recordLockMs,
    deletedFlagField: config.marketo.deletedFlagField,
    signal: shutdown,
    suppressions,
  });
  const syncPerson = createSyncPerson({ db, marketo, dynamics, mappings, owner, leaseMs: config.sync.recordLockMs, fencing, suppressions });
  // bounded: past the limit Dataverse deliveries are refused with 503 and Sync Person queues
  const intake = createInboxIntake(db, { limit: config.sync.intakeQueueLimit });
  const metrics = createMetrics({ db, marketoStats: () => marketoClient.stats(), dataverseStats: () => dataverseClient.stats(), intakeStats: () => intake.stats(), vendorQueues: vendors.vendorQueues });
  // told only by the worker's own batches: the worker exists by then
  const fanout = createFanout({ db, dynamics, mappings, notify: () => worker.notify() });
  const merges = createMergeHandler({ db, owner, leaseMs: config.sync.recordLockMs, notify: () => worker.notify() });
  const worker = createSyncWorker({
    db,
    engine,
    syncPerson,
    fanout,
    merges,
    logger: logger.child({ component: 'worker' }),
    owner,
    batchSize: config.sync.inboxBatchSize,
    leaseMs: config.sync.inboxLeaseSeconds * 1000,
    maxAttempts: config.sync.inboxMaxAttempts,
    pollMs: config.sync.inboxPollMs,
    signal: shutdown,
    onOutcome: (status) => metrics.recordOutcome(status),
  });
  const leases = createLeaseKeeper({
    db,
    owner,
    heldEvents: () => worker.heldEvents(),
    eventLeaseMs: config.sync.inboxLeaseSeconds * 1000,
    recordLeaseMs: config.sync.recordLockMs,
    fencing,
    logger: logger.child({ component: 'leases' }),
  });
  await leases.reclaimOnStart();
  leases.start();
  deps.closers.add('lease heartbeat', () => leases.stop());
  const batchSyncs = createBatchSyncRunner({
    db,
    marketo,
    mappings,
    syncPerson,
    owner,
    leases,
    logger: logger.child({ component: 'batch-sync-person' }),
    ...(deps.batchSyncPageSize ? { pageSize: deps.batchSyncPageSize } : {}),
  });
  const sweeper = createSweepService({
    config,
    db,
    marketoClient,
    dataverseClient,
    mappings,
    syncUserId: () => engine.syncUserId(),
    logger,
    owner,
    notify: () => worker.notify(),
    marketoApiUser: () => marketoClient.apiUser(),
    suppressions,
    leases,
  });
  const operator = createOperatorActions({ db, marketo, dynamics, mappings, owner, notify: () => worker.notify(), fencing });
  return { mappings, engine, syncPerson, intake, metrics, worker, sweeper, operator, batchSyncs, leases };
}
