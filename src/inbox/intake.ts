import { createSplittingCoalescer } from '../coalesce.ts';
import type { Database } from '../db/database.ts';
import { enqueue, enqueueBatch, type EnqueueResult, type NewChangeEvent } from './inbox.ts';

// Where webhooks put their events: every body is stored before its answer, and the webhooks that
// arrive together share one statement. A bulk change in either system sends thousands of webhooks at
// once; one INSERT each would queue them all for the connection pool ahead of the worker's own
// statements, and nothing would sync until the last one was answered.
//
// The queue in front of the statement is bounded: when the store cannot keep up, `admit` says so
// before anything is queued. Dataverse retries a refused delivery (503 with Retry-After), so its
// webhooks are refused first, at `limit`; Marketo never retries a webhook, so its own get a reserve
// beyond that (`marketoReserve`) and are shed only past it (the sweep's leadchanges feed finds
// what they carried; the count is in /metrics and the work-queue view). Above `limit` the replica
// is overloaded: Sync Person queues its work instead of starting vendor calls on the request.

export type IntakeSource = 'dynamics' | 'marketo_person_changed' | 'marketo_sync_person';

export type IntakeStats = {
  /** events waiting for (or in) the statement that stores them */
  queued: number;
  /** where Dataverse webhooks start to be refused; Marketo's past it plus the reserve */
  limit: number;
  marketoLimit: number;
  /** webhooks refused because the queue was full, by source, since this replica started */
  shed: Record<IntakeSource, number>;
};

export type IntakeStore = {
  batch: (events: NewChangeEvent[]) => Promise<EnqueueResult[]>;
  one: (event: NewChangeEvent) => Promise<EnqueueResult>;
};

export function createInboxIntake(
  db: Database,
  options: { maxBatch?: number; maxInFlight?: number; limit?: number; marketoReserve?: number; store?: IntakeStore } = {},
) {
  const store: IntakeStore = options.store ?? { batch: (events) => enqueueBatch(db, events), one: (event) => enqueue(db, event) };
  const limit = options.limit ?? 5_000;
  const marketoLimit = limit + (options.marketoReserve ?? limit);
  let queued = 0;
  const shed: Record<IntakeSource, number> = { dynamics: 0, marketo_person_changed: 0, marketo_sync_person: 0 };
  // Should the shared statement fail (one event the database refuses), each event is stored on its
  // own, in the order they came: one bad body never costs the webhooks that arrived with it their
  // answer, nor their place in the queue.
  const writer = createSplittingCoalescer<NewChangeEvent, EnqueueResult>(
    async (events) => {
      const results = await store.batch(events);
      return new Map(events.map((event, i) => [event, results[i]!]));
    },
    (event) => store.one(event),
    { maxBatch: options.maxBatch ?? 500, maxInFlight: options.maxInFlight ?? 2, inOrder: true },
  );

  return {
    /** Whether a webhook of `source` may be queued now; a refusal is counted as shed. */
    admit(source: IntakeSource): boolean {
      const room = source === 'dynamics' ? limit : marketoLimit;
      if (queued < room) return true;
      shed[source] += 1;
      return false;
    },
    /** true while the store is behind: new vendor work should wait in the inbox */
    overloaded: () => queued >= limit,
    /** Stores the event unless its dedupe key is known; resolves once it is committed. */
    async enqueue(event: NewChangeEvent): Promise<EnqueueResult> {
      queued += 1;
      try {
        const result = await writer.load(event);
        if (!result) throw new Error(`no result for change event ${event.dedupeKey} (bug)`);
        return result;
      } finally {
        queued -= 1;
      }
    },
    stats(): IntakeStats {
      return { queued, limit, marketoLimit, shed: { ...shed } };
    },
  };
}

export type InboxIntake = ReturnType<typeof createInboxIntake>;
