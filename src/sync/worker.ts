import type { Database } from '../db/database.ts';
import { claim, completeMany, fail, release, type ClaimedChangeEvent } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import { activity, recordActivities } from './activities.ts';
import { outcomeForError, type EventOutcome, type SyncEngine } from './engine.ts';
import { FANOUT, type Fanout } from './fanout.ts';
import { MERGED, type MergeHandler } from './merged-records.ts';
import type { SyncPerson } from './sync-person.ts';

// The one loop that drains the inbox on each replica: claim a batch (SKIP LOCKED, leased), hand
// it to the engine, and record each event's outcome. Claiming does not wait for earlier batches:
// while they wait for a rate-limited API, new events are claimed and join the same calls (see
// ride-along.ts and coalesce.ts), so an event never waits for a batch it is not part of. Webhooks
// wake the loop at once; otherwise it polls. Stopping waits for the batches in hand, so a SIGTERM
// loses nothing.

export interface WorkerOptions {
  db: Database;
  engine: SyncEngine;
  syncPerson: SyncPerson;
  /** expands a change of an account or a user into its linked persons' events (fanout.ts) */
  fanout?: Fanout;
  /** moves links after a merge in Marketo or Dynamics (merged-records.ts) */
  merges?: MergeHandler;
  logger: Logger;
  owner: string;
  batchSize: number;
  leaseMs: number;
  maxAttempts: number;
  pollMs: number;
  /**
   * events claimed and not yet finished on this replica, at most (default 30 batches' worth): under a
   * burst an event spends seconds in flight (a Marketo call slot, a Dataverse $batch of hundreds of
   * operations), and only events in flight can fill the next call; their leases are renewed meanwhile
   */
  maxInFlight?: number;
  /**
   * Under load, claims are at least this far apart (default 50 ms): events that arrive together
   * are synced in one batch, and a lone event on an idle replica is still claimed at once.
   */
  claimIntervalMs?: number;
  /** how long an event whose record is busy elsewhere waits before it is claimable again */
  busyDelayMs?: number;
  /** aborted at shutdown: a Sync Person call it cut goes back to the inbox, as the engine's work does */
  signal?: AbortSignal;
  /** told each event's outcome (metrics) */
  onOutcome?: (status: EventOutcome['status']) => void;
}

export interface BatchReport {
  claimed: number;
  done: number;
  retried: number;
  dead: number;
  busy: number;
}

export function createSyncWorker(options: WorkerOptions) {
  const { db, engine, logger } = options;
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  const sleepers = new Set<() => void>();
  /** the events claimed and not yet finished here: the lease heartbeat renews these and only these */
  const held = new Set<string>();

  async function fanoutEvent(event: ClaimedChangeEvent): Promise<EventOutcome> {
    if (!options.fanout) return { status: 'dead', reason: 'this replica does not expand account and owner changes' };
    try {
      return await options.fanout.expand(event);
    } catch (error) {
      logger.warn({ err: error, eventId: event.id }, 'expanding an account or owner change failed');
      return outcomeForError(error, options.signal);
    }
  }

  async function mergeEvent(event: ClaimedChangeEvent): Promise<EventOutcome> {
    if (!options.merges) return { status: 'dead', reason: 'this replica does not handle merges' };
    try {
      return await options.merges.handle(event);
    } catch (error) {
      logger.warn({ err: error, eventId: event.id }, 'moving a link after a merge failed');
      return outcomeForError(error, options.signal);
    }
  }

  async function syncPersonEvent(event: ClaimedChangeEvent): Promise<EventOutcome> {
    const payload = (event.payload ?? {}) as { syncAs?: string; assignTo?: string };
    try {
      const result = await options.syncPerson({
        marketoId: event.marketoId ?? -1,
        entity: payload.syncAs === 'contact' ? 'CONTACT' : 'LEAD',
        assignTo: payload.assignTo,
        changeEventId: event.id,
      });
      switch (result.status) {
        case 'created':
        case 'existing':
          return { status: 'done', linkId: result.linkId };
        case 'busy':
          return { status: 'busy' };
        case 'not_found':
        case 'rejected':
          return result.status === 'rejected' && result.erased ? { status: 'done', linkId: null, erased: true } : { status: 'done', linkId: null, note: result.message };
      }
    } catch (error) {
      return outcomeForError(error, options.signal);
    }
  }

  async function record(event: ClaimedChangeEvent, outcome: EventOutcome, report: BatchReport): Promise<void> {
    options.onOutcome?.(outcome.status);
    switch (outcome.status) {
      case 'done':
        // completed together, in one statement, by runOnce
        report.done++;
        return;
      case 'busy':
        // released together, in one statement, by runOnce
        report.busy++;
        return;
      case 'retry':
      case 'dead': {
        const result = await fail(db.prisma, event, options.owner, outcome.reason, {
          maxAttempts: options.maxAttempts,
          permanent: outcome.status === 'dead',
          ...(outcome.status === 'retry' ? { retryAfterMs: outcome.retryAfterMs } : {}),
        });
        if (result.status === 'DEAD') {
          report.dead++;
          logger.warn({ eventId: event.id, marketoId: event.marketoId, dynamicsId: event.dynamicsId, reason: outcome.reason }, 'change event dead-lettered');
          await recordActivities(db.prisma, [
            activity(
              {
                marketoId: event.marketoId,
                entity: event.dynamicsEntity,
                dynamicsId: event.dynamicsId,
                linkId: event.linkId,
                changeEventId: event.id,
              },
              'SYNC_FAILED',
              `gave up after ${event.attempts} attempt(s): ${outcome.reason}. Replay the event once the cause is fixed.`,
            ),
          ]);
        } else {
          report.retried++;
        }
        return;
      }
    }
  }

  function claimBatch(): Promise<ClaimedChangeEvent[]> {
    return claim(db.prisma, { owner: options.owner, batchSize: options.batchSize, leaseMs: options.leaseMs, maxAttempts: options.maxAttempts });
  }

  async function syncClaimed(events: ClaimedChangeEvent[]): Promise<BatchReport> {
    const report: BatchReport = { claimed: events.length, done: 0, retried: 0, dead: 0, busy: 0 };
    if (events.length === 0) return report;
    for (const event of events) held.add(event.id);
    try {
      return await syncHeld(events, report);
    } finally {
      // finished or lost (a failed completion): either way no longer ours to keep alive
      for (const event of events) held.delete(event.id);
    }
  }

  async function syncHeld(events: ClaimedChangeEvent[], report: BatchReport): Promise<BatchReport> {
    const flowActions = events.filter((e) => e.operation === 'SYNC_PERSON');
    const fanouts = events.filter((e) => e.operation === FANOUT);
    const merges = events.filter((e) => e.operation === MERGED);
    const changes = events.filter((e) => e.operation !== 'SYNC_PERSON' && e.operation !== FANOUT && e.operation !== MERGED);
    // Merges first, one at a time: a change of a merged-away record in the same batch then follows
    // the moved link (the engine sees it moved and groups it again) instead of finding its person gone.
    const mergeOutcomes: (readonly [string, EventOutcome])[] = [];
    for (const e of merges) mergeOutcomes.push([e.id, await mergeEvent(e)] as const);
    const [batchOutcomes, personOutcomes, fanoutOutcomes] = await Promise.all([
      engine.syncBatch(changes),
      Promise.all(flowActions.map(async (e) => [e.id, await syncPersonEvent(e)] as const)),
      Promise.all(fanouts.map(async (e) => [e.id, await fanoutEvent(e)] as const)),
    ]);
    const outcomes = new Map([...batchOutcomes, ...personOutcomes, ...fanoutOutcomes, ...mergeOutcomes]);
    const done: { id: string; linkId: string | null }[] = [];
    const erased: string[] = [];
    const busy: string[] = [];
    for (const event of events) {
      const outcome = outcomes.get(event.id) ?? { status: 'retry', reason: 'no outcome for the event (bug)' };
      if (outcome.status === 'done' && outcome.erased) erased.push(event.id);
      else if (outcome.status === 'done') done.push({ id: event.id, linkId: outcome.linkId });
      if (outcome.status === 'busy') busy.push(event.id);
      await record(event, outcome, report);
    }
    await completeMany(db.prisma, done, options.owner);
    // an erased person's events leave no row behind (the erasure list is their only trace)
    if (erased.length > 0) await db.prisma.changeEvent.deleteMany({ where: { id: { in: erased }, leaseOwner: options.owner } });
    await release(db.prisma, busy, options.owner, options.busyDelayMs ?? 250);
    logger.debug({ ...report }, 'inbox batch synced');
    return report;
  }

  /** Claims and syncs one batch; the number of events it claimed. */
  async function runOnce(): Promise<BatchReport> {
    return syncClaimed(await claimBatch());
  }

  /** Resolves after `ms`, or earlier when woken (a webhook's notify, stop). */
  function pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleepers.add(wake);
    });
  }

  async function claimLoop(): Promise<void> {
    const maxInFlight = options.maxInFlight ?? options.batchSize * 30;
    const claimIntervalMs = options.claimIntervalMs ?? 50;
    const inFlight = new Set<Promise<void>>();
    let eventsInFlight = 0;
    let lastClaim = -Infinity;
    while (running) {
      if (eventsInFlight >= maxInFlight) {
        await Promise.race(inFlight);
        continue;
      }
      const spacing = lastClaim + claimIntervalMs - performance.now();
      // only a timer, not a notify, ends this wait: the point is to let arrivals gather
      if (spacing > 0) await new Promise((resolve) => setTimeout(resolve, spacing));
      if (!running) break;
      lastClaim = performance.now();
      let events: ClaimedChangeEvent[] = [];
      try {
        events = await claimBatch();
      } catch (error) {
        logger.error({ err: error }, 'inbox claim failed');
      }
      if (events.length === 0) {
        lastClaim = -Infinity;
        await pause(options.pollMs);
        continue;
      }
      eventsInFlight += events.length;
      const batch: Promise<void> = syncClaimed(events)
        .then(
          () => undefined,
          (error: unknown) => logger.error({ err: error }, 'inbox worker batch failed'),
        )
        .finally(() => {
          eventsInFlight -= events.length;
          inFlight.delete(batch);
        });
      inFlight.add(batch);
    }
    await Promise.all(inFlight);
  }

  return {
    runOnce,
    /** The ids of the events in hand (claimed, not yet finished), for the lease heartbeat. */
    heldEvents(): string[] {
      return [...held];
    },
    /** Runs batches until nothing is claimable (tests, the CLI). */
    async drain(maxBatches = 1_000): Promise<BatchReport> {
      const total: BatchReport = { claimed: 0, done: 0, retried: 0, dead: 0, busy: 0 };
      for (let i = 0; i < maxBatches; i++) {
        const report = await runOnce();
        for (const key of Object.keys(total) as (keyof BatchReport)[]) total[key] += report[key];
        if (report.claimed === 0) break;
      }
      return total;
    },
    start(): void {
      if (running) return;
      running = true;
      loop = claimLoop();
    },
    /** An event was just enqueued: look now rather than at the next poll. */
    notify(): void {
      for (const wake of sleepers) {
        wake();
        return;
      }
    },
    async stop(): Promise<void> {
      running = false;
      for (const wake of [...sleepers]) wake();
      await loop;
    },
  };
}

export type SyncWorker = ReturnType<typeof createSyncWorker>;
