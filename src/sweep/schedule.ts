import cron, { type ScheduledTask } from 'node-cron';
import type { Db } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import { requestFullReconcile } from './cursors.ts';
import type { LeaseHolder } from '../sync/leases.ts';
import { cronLogger, scheduleLeased, type Lease } from './lease.ts';
import type { Sweeper, SweepRequest, SweepResult, SweepTrigger } from './sweep.ts';

// When sweeps run: node-cron on SYNC_SWEEP_CRON with noOverlap (never twice at once here) and
// distributed with a RunCoordinator over the SchedulerLease row (exactly one replica per tick, and
// never while another replica's sweep still holds the lease). Operator and CLI requests take the
// same lease. SYNC_FULL_CRON only marks a full reconciliation as due (an idempotent row update on
// every replica); the next sweep does it, under the lease. Stopping awaits the running sweep.

export const SWEEP_JOB = 'sweep';

export interface SweepSchedulerOptions {
  db: Db;
  sweeper: Sweeper;
  lease: Lease;
  /** the replica's lease heartbeat: renews the lease while a sweep runs, aborts the sweep if it is lost */
  leases: LeaseHolder;
  logger: Logger;
  /** node-cron expression (seconds allowed); undefined: no schedule on this process (CLI) */
  sweepCron?: string | undefined;
  fullCron?: string | undefined;
}

export type RequestSweepResult =
  | { status: 'started'; runId: string; result: SweepResult }
  | { status: 'busy'; runId: null; message: string };

export function createSweepScheduler(options: SweepSchedulerOptions) {
  const { db, sweeper, lease, logger } = options;
  const shutdown = new AbortController();
  const tasks: ScheduledTask[] = [];
  let current: Promise<SweepResult> | undefined;

  /** Runs a sweep while holding the lease (already taken), renewing it until the sweep ends. */
  async function runHeld(trigger: SweepTrigger, full: boolean, extra: Pick<SweepRequest, 'onStart' | 'outcomeWaitMs' | 'scheduledFor'> = {}): Promise<SweepResult> {
    const run = options.leases.whileHeld(lease, SWEEP_JOB, shutdown.signal, (signal) => sweeper.run({ ...extra, trigger, full, signal }));
    current = run;
    try {
      return await run;
    } finally {
      if (current === run) current = undefined;
    }
  }

  return {
    start(): void {
      if (tasks.length > 0 || shutdown.signal.aborted) return;
      if (options.sweepCron) {
        const task = scheduleLeased(options.sweepCron, SWEEP_JOB, lease, logger, async (slot) => {
          if (shutdown.signal.aborted) return;
          await runHeld('SCHEDULE', false, { scheduledFor: slot });
        });
        tasks.push(task);
      }
      if (options.fullCron) {
        tasks.push(
          cron.schedule(
            options.fullCron,
            async () => {
              for (const entity of ['LEAD', 'CONTACT'] as const) await requestFullReconcile(db, entity);
              logger.info('full reconciliation due: the next sweep reconciles every linked pair');
            },
            { name: `${SWEEP_JOB}-full`, noOverlap: true, logger: cronLogger(logger), suppressMissedWarning: true },
          ),
        );
      }
    },
    /** A sweep now (operator, CLI), through the same lease: refused while any replica sweeps. */
    async requestSweep(request: { trigger?: SweepTrigger; full?: boolean } & Pick<SweepRequest, 'onStart' | 'outcomeWaitMs'> = {}): Promise<RequestSweepResult> {
      if (shutdown.signal.aborted) return { status: 'busy', runId: null, message: 'the service is shutting down' };
      if (!(await lease.acquireNow(SWEEP_JOB))) {
        return { status: 'busy', runId: null, message: 'a sweep is already running (on this or another replica); it covers this request' };
      }
      try {
        const { trigger, full, ...extra } = request;
        const result = await runHeld(trigger ?? 'OPERATOR', full ?? false, extra);
        return { status: 'started', runId: result.runId, result };
      } finally {
        await lease.release(SWEEP_JOB);
      }
    },
    /** the sweep running on this replica, if any */
    running(): Promise<SweepResult> | undefined {
      return current;
    },
    async stop(): Promise<void> {
      shutdown.abort();
      for (const task of tasks.splice(0)) await task.destroy();
      await current?.catch(() => undefined);
    },
  };
}

export type SweepScheduler = ReturnType<typeof createSweepScheduler>;
