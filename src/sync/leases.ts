import type { Database } from '../db/database.ts';
import { reclaimAbandoned, renewEventLeases } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import type { Fencing } from './fence.ts';
import { dropAllRecordLeases, renewRecordLeases } from './locks.ts';

// The one heartbeat of a replica's leases. Leases are short so that a dead worker's work is picked
// up in seconds, and renewed while the worker lives, so a slow sync (Marketo retries that last
// minutes, a Dataverse Retry-After pause) never loses its inbox events or record leases to a second
// worker. One beat renews everything this replica holds: its inbox events and record leases in two
// statements whatever the number of syncs in flight, and one statement for each other kind of lease
// it holds now (a scheduled job's, a Batch Sync Person's). An event counts as held while the worker
// has it in hand, so a batch lost in this process gives its events back when their leases run out.
// A lease the beat could not renew (it ran out during a pause, or another worker took it) aborts the
// work that held it, and so does a beat that has failed for longer than a lease: a record's work
// would be fenced out of its vendor writes anyway (sync/fence.ts), a sweep or a batch would carry on
// beside the replica that now holds it, and stopping at once leaves the work to that replica.

/**
 * A kind of lease besides records and events, held by one piece of work at a time per id (a
 * scheduler_lease row, a batch_sync row): its table knows how to renew what this replica holds.
 */
export interface LeaseTable {
  /** names the kind in log lines */
  name: string;
  leaseMs: number;
  /** extends the leases of `ids` this replica still holds; answers those */
  renew(ids: readonly string[]): Promise<ReadonlySet<string>>;
}

/** Runs work while this replica holds a lease it already took, renewed by the heartbeat. */
export interface LeaseHolder {
  /**
   * `work`'s signal aborts when the lease is lost (not renewed, or the heartbeat failed for longer
   * than the lease) or `stop` aborts; the lease stays this replica's to release.
   */
  whileHeld<T>(table: LeaseTable, id: string, stop: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T>;
}

export interface LeaseKeeperOptions {
  db: Database;
  /** this replica's name: inbox events are leased to it, record leases to `<owner>:<uuid>` */
  owner: string;
  /** the inbox events the worker has in hand: only their leases are renewed (none: a process without a worker) */
  heldEvents?: () => readonly string[];
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
  /** the other leases held now: by table, the work holding each id (and since when: a beat that began earlier says nothing of it) */
  const tables = new Map<LeaseTable, { byId: Map<string, { lost: AbortController; since: number }>; lastRenewed: number; failing: boolean }>();

  async function beatRecords(beganAt: number): Promise<void> {
    try {
      await renewEventLeases(db.prisma, owner, options.eventLeaseMs, options.heldEvents?.() ?? []);
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

  async function beatTable(table: LeaseTable, beganAt: number): Promise<void> {
    const held = tables.get(table);
    if (!held || held.byId.size === 0) return;
    const ids = [...held.byId.keys()];
    try {
      const still = await table.renew(ids);
      held.lastRenewed = beganAt;
      held.failing = false;
      for (const id of ids) if (!still.has(id)) lose(table, id, beganAt, 'the heartbeat could not renew it');
    } catch (error) {
      if (!held.failing) logger.warn({ err: error, lease: table.name }, 'renewing leases failed; they expire unless it recovers');
      held.failing = true;
      if (clock() - held.lastRenewed > table.leaseMs) for (const id of ids) lose(table, id, beganAt, 'the heartbeat has failed for longer than a lease');
    }
  }

  /** Aborts the work holding `id`, unless it took the lease after the beat that found it lost began. */
  function lose(table: LeaseTable, id: string, beganAt: number, why: string): void {
    const work = tables.get(table)?.byId.get(id);
    if (!work || work.since > beganAt || work.lost.signal.aborted) return;
    logger.warn({ lease: table.name, id }, `lease lost (${why}); the work is aborted`);
    work.lost.abort(new Error(`the ${table.name} lease ${id} was lost (${why})`));
  }

  async function beat(): Promise<void> {
    const beganAt = clock();
    await Promise.all([beatRecords(beganAt), ...[...tables.keys()].map((table) => beatTable(table, beganAt))]);
  }

  async function whileHeld<T>(table: LeaseTable, id: string, stop: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const held = tables.get(table) ?? { byId: new Map<string, { lost: AbortController; since: number }>(), lastRenewed: clock(), failing: false };
    tables.set(table, held);
    if (held.byId.has(id)) throw new Error(`the ${table.name} lease ${id} is already held by work on this replica`);
    const holding = { lost: new AbortController(), since: clock() };
    held.byId.set(id, holding);
    try {
      return await work(AbortSignal.any([stop, holding.lost.signal]));
    } finally {
      if (held.byId.get(id) === holding) held.byId.delete(id);
      if (held.byId.size === 0 && tables.get(table) === held) tables.delete(table);
    }
  }

  return {
    intervalMs,
    whileHeld,
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
