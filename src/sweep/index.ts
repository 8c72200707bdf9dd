import type { Suppressions } from '../security/suppression.ts';
import cron from 'node-cron';
import type { Config } from '../config.ts';
import type { DataverseClient } from '../connectors/dynamics/dataverse.client.ts';
import type { MarketoClient } from '../connectors/marketo/marketo.client.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import type { MappingService } from '../sync/mappings.ts';
import type { LeaseHolder } from '../sync/leases.ts';
import { createLease } from './lease.ts';
import { createSweepScheduler, type RequestSweepResult } from './schedule.ts';
import { createSweeper } from './sweep.ts';

// The sweep as the composition root wires it: sweeper + lease + schedule, from the config.

export interface SweepServiceOptions {
  config: Config;
  db: Database;
  marketoClient: MarketoClient;
  dataverseClient: DataverseClient;
  mappings: MappingService;
  syncUserId: () => Promise<string>;
  logger: Logger;
  owner: string;
  notify: () => void;
  /** the Marketo API user whose changes are the sync's own (known in sandbox mode) */
  marketoApiUser?: (() => string | undefined) | undefined;
  /** false: no cron on this process (the CLI); requests still take the lease */
  schedule?: boolean;
  /** the erasure list (security/suppression.ts) */
  suppressions?: Suppressions;
  /** the replica's lease heartbeat (sync/leases.ts): keeps the sweep's lease while a sweep runs */
  leases: LeaseHolder;
}

export function createSweepService(options: SweepServiceOptions) {
  const { config, db } = options;
  const logger = options.logger.child({ component: 'sweep' });
  const sweeper = createSweeper({
    db,
    marketo: options.marketoClient,
    dataverse: options.dataverseClient,
    mappings: options.mappings,
    syncUserId: options.syncUserId,
    logger,
    owner: options.owner,
    quota: { dailyQuota: config.marketo.dailyQuota, share: config.sync.sweepQuotaShare },
    marketoApiUser: options.marketoApiUser,
    notify: options.notify,
    ...(options.suppressions ? { suppressions: options.suppressions } : {}),
    // counts the run's outcomes once the engine has processed its events: the run (and the lease)
    // waits at most half the time to the next tick, so a fast schedule is not slowed by it
    outcomeWaitMs: config.sync.sweepCron ? Math.min(60_000, cronIntervalMs(config.sync.sweepCron) / 2) : 60_000,
  });
  // 30 s, renewed by each heartbeat while a sweep runs: a dead replica's lease frees within half a minute
  const lease = createLease({ db: db.prisma, owner: options.owner, ttlMs: 30_000 });
  const scheduler = createSweepScheduler({
    db: db.prisma,
    sweeper,
    lease,
    leases: options.leases,
    logger,
    ...(options.schedule === false ? {} : { sweepCron: config.sync.sweepCron, fullCron: config.sync.fullCron }),
  });
  return {
    sweeper,
    lease,
    scheduler,
    requestSweep: (...args: Parameters<typeof scheduler.requestSweep>) => scheduler.requestSweep(...args),
    /** the GraphQL `requestSweep`: answers as soon as the run exists, not when it ends */
    requestSweepAction(): Promise<{ runId: string | null; message: string }> {
      return new Promise((resolve) => {
        let answered = false;
        const answer = (value: { runId: string | null; message: string }) => {
          if (!answered) resolve(value);
          answered = true;
        };
        scheduler
          .requestSweep({ trigger: 'OPERATOR', onStart: (runId) => answer({ runId, message: 'sweep started' }) })
          .then(
            (result: RequestSweepResult) => answer(result.status === 'busy' ? { runId: null, message: result.message } : { runId: result.runId, message: 'sweep finished' }),
            (error: unknown) => answer({ runId: null, message: `the sweep could not start: ${error instanceof Error ? error.message : String(error)}` }),
          );
      });
    },
    start: () => scheduler.start(),
    stop: () => scheduler.stop(),
  };
}

/** the shortest gap between two of the expression's next few ticks */
function cronIntervalMs(expression: string): number {
  const task = cron.createTask(expression, () => undefined);
  const runs = task.getNextRuns(5).map((d) => d.getTime());
  void task.destroy();
  let shortest = Number.POSITIVE_INFINITY;
  for (let i = 1; i < runs.length; i++) shortest = Math.min(shortest, runs[i]! - runs[i - 1]!);
  return Number.isFinite(shortest) ? shortest : 300_000;
}

export type SweepService = ReturnType<typeof createSweepService>;
