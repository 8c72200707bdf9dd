import type { Database } from '../db/database.ts';
import { reclaimAbandoned, renewEventLeases } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import type { Fencing } from './fence.ts';
import { dropAllRecordLeases, renewRecordLeases } from './locks.ts';

// The heartbeat of the write protocol (step 3): leases are short so that a dead worker's work is
// picked up in seconds, and renewed while the worker lives, so a slow sync (Marketo retries that
// last minutes, a Dataverse Retry-After pause) never loses its inbox events or record leases to a
// second worker. One beat renews everything this replica holds in two statements, whatever the
// number of syncs in flight; an event counts as held while the worker has it in hand, so a batch
// lost in this process gives its events back when their leases run out. A record lease the beat
// could not renew (it ran out during a pause, or another worker took it) aborts the work that held
// it, and so does a beat that has failed for longer than a lease: that work's writes would be fenced
// out anyway (sync/fence.ts), and stopping it at once frees its events for the worker that now holds
// the records.

export interface LeaseKeeperOptions {
  db: Database;
  /** this replica's name: inbox events are leased to it, record leases to `<owner>:<uuid>` */
  owner: string;
  /** the inbox events the worker has in hand: only their leases are renewed */
  heldEvents: () => readonly string[];
  eventLeaseMs: number;
  recordLeaseMs: number;
  /** default: a third of the shorter lease, so two beats can be missed before anything expires */
  intervalMs?: number;
  /** told which record leases each beat renewed, so that the work of those it lost is aborted */
  fencing?: Fencing;
  logger: Logger;
}

export function createLeaseKeeper(options: LeaseKeeperOptions) {
  const { db, owner, logger } = options;
  const intervalMs = options.intervalMs ?? Math.max(250, Math.floor(Math.min(options.eventLeaseMs, options.recordLeaseMs) / 3));
  let timer: NodeJS.Timeout | undefined;
  let beating: Promise<void> = Promise.resolve();
  let failing = false;
  const fencing = options.fencing;
  const clock = fencing?.now ?? performance.now.bind(performance);
  let lastRenewed = clock();

  async function beat(): Promise<void> {
    const beganAt = clock();
    try {
      await renewEventLeases(db.prisma, owner, options.eventLeaseMs, options.heldEvents());
      const renewed = await renewRecordLeases(db.prisma, owner, options.recordLeaseMs);
      lastRenewed = beganAt;
      await fencing?.afterBeat(beganAt, renewed);
      if (failing) logger.info('lease heartbeat works again');
      failing = false;
    } catch (error) {
      // One line per outage, not per beat.
      if (!failing) logger.warn({ err: error }, 'lease heartbeat failed; leases expire unless it recovers');
      failing = true;
      if (clock() - lastRenewed > options.recordLeaseMs) fencing?.loseAll('the heartbeat has failed for longer than a lease');
    }
  }

  return {
    intervalMs,
    /** Renews now (tests, and right after a long pause such as a stop-the-world start-up). */
    beat(): Promise<void> {
      beating = beating.then(beat);
      return beating;
    },
    /**
     * On the embedded database one process owns the data by construction, so every lease in it
     * was left by a run that is gone: its work moves again at once instead of after the leases.
     */
    async reclaimOnStart(): Promise<{ events: number; records: number }> {
      if (db.engine !== 'pglite') return { events: 0, records: 0 };
      const events = await reclaimAbandoned(db.prisma);
      const records = await dropAllRecordLeases(db.prisma);
      if (events || records) logger.info({ events, records }, 'reclaimed the work of the previous run (embedded database)');
      return { events, records };
    },
    start(): void {
      if (timer) return;
      timer = setInterval(() => void this.beat(), intervalMs);
      timer.unref();
    },
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = undefined;
      await beating;
    },
  };
}

export type LeaseKeeper = ReturnType<typeof createLeaseKeeper>;
