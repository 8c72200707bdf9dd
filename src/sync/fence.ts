import type { Database } from '../db/database.ts';
import { createCoalescer } from '../coalesce.ts';
import type { Logger } from '../logger.ts';
import { heldBy, renewIfHeld } from './locks.ts';
import type { WriteFence } from './ports.ts';

// Fenced writes (DESIGN "Production is several replicas"). A piece of work that holds record
// leases gets a fence: the connectors ask it, right before each vendor call that carries the
// work's writes, whether the work still holds its leases (one statement for every piece of work in
// the call, which also extends those leases). The heartbeat tells the fencing which holders it could
// not renew: their work is aborted, so a replica that wakes from a pause longer than its lease drops
// the work it had in hand instead of writing from stale reads.

/** The work lost its record lease: what it was about to write was not sent. */
export class FencedOutError extends Error {
  constructor(message = 'the record lease was lost (a pause longer than the lease, or the heartbeat failed); the write was not sent') {
    super(message);
    this.name = 'FencedOutError';
  }
}

interface Held {
  keys: Set<string>;
  controller: AbortController;
  /** when it was registered: a beat that began earlier cannot have renewed it */
  since: number;
}

export interface FencingOptions {
  db: Database;
  /** how long a lease lasts; the fence extends it by this much */
  leaseMs: number;
  /** aborted at shutdown: every fence's signal follows it */
  shutdown?: AbortSignal;
  logger?: Logger;
  now?: () => number;
}

export function createFencing(options: FencingOptions) {
  const { db, leaseMs } = options;
  const now = options.now ?? performance.now.bind(performance);
  const held = new Map<string, Held>();

  const checks = createCoalescer<string, boolean>(
    async (holders) => {
      const asked = holders.flatMap((holder) => {
        const h = held.get(holder);
        return h && !h.controller.signal.aborted ? [{ holder, keys: [...h.keys] }] : [];
      });
      const still = await renewIfHeld(db.prisma, asked, leaseMs);
      return new Map(holders.map((holder) => [holder, still.has(holder)]));
    },
    { maxBatch: 500, maxInFlight: 2 },
  );

  function lose(holder: string, why: string): void {
    const h = held.get(holder);
    if (!h || h.controller.signal.aborted) return;
    options.logger?.warn({ holder }, `record lease lost (${why}); the work is aborted`);
    h.controller.abort(new FencedOutError());
  }

  function fenceOf(holder: string, h: Held): WriteFence {
    const signal = options.shutdown ? AbortSignal.any([h.controller.signal, options.shutdown]) : h.controller.signal;
    return {
      signal,
      async verify(): Promise<void> {
        if (signal.aborted) throw new FencedOutError();
        if (!(await checks.load(holder))) {
          lose(holder, 'the fence found it taken or expired');
          throw new FencedOutError();
        }
      },
    };
  }

  return {
    /** Registers work that holds `keys` as `holder` (after it took them); its fence. */
    hold(holder: string, keys: readonly string[]): WriteFence {
      const h = held.get(holder) ?? { keys: new Set<string>(), controller: new AbortController(), since: now() };
      keys.forEach((k) => h.keys.add(k));
      held.set(holder, h);
      return fenceOf(holder, h);
    },
    /** The work let these leases go (all of them when `keys` is not given). */
    release(holder: string, keys?: readonly string[]): void {
      const h = held.get(holder);
      if (!h) return;
      keys?.forEach((k) => h.keys.delete(k));
      if (!keys || h.keys.size === 0) held.delete(holder);
    },
    /**
     * A heartbeat that began at `beganAt` renewed the leases of `renewed`: any other holder registered
     * before it began is checked once more (a lease busy in a fence is skipped by the beat, not lost)
     * and aborted if it holds its keys no longer.
     */
    async afterBeat(beganAt: number, renewed: ReadonlySet<string>): Promise<void> {
      const unsure = [...held].filter(([holder, h]) => h.since < beganAt && !renewed.has(holder) && !h.controller.signal.aborted);
      if (unsure.length === 0) return;
      const still = await heldBy(db.prisma, unsure.map(([holder, h]) => ({ holder, keys: [...h.keys] })));
      for (const [holder] of unsure) if (!still.has(holder)) lose(holder, 'the heartbeat could not renew it');
    },
    /** The heartbeat has failed for longer than a lease: nothing this replica holds can be trusted. */
    loseAll(why: string): void {
      for (const holder of held.keys()) lose(holder, why);
    },
    /** holders registered now (tests, metrics) */
    size(): number {
      return held.size;
    },
    now,
  };
}

export type Fencing = ReturnType<typeof createFencing>;
