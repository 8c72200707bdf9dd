import { createSplittingCoalescer } from '../coalesce.ts';
import type { Database } from '../db/database.ts';
import { enqueue, enqueueBatch, type EnqueueResult, type NewChangeEvent } from './inbox.ts';

// Where webhooks put their events: every body is stored before its answer, and the webhooks that
// arrive together share one statement. A bulk change in either system sends thousands of webhooks at
// once; one INSERT each would queue them all for the connection pool ahead of the worker's own
// statements, and nothing would sync until the last one was answered.

export function createInboxIntake(db: Database, options: { maxBatch?: number; maxInFlight?: number } = {}) {
  // Should the shared statement fail (one event the database refuses), each event is stored on its
  // own, in the order they came: one bad body never costs the webhooks that arrived with it their
  // answer, nor their place in the queue.
  const writer = createSplittingCoalescer<NewChangeEvent, EnqueueResult>(
    async (events) => {
      const results = await enqueueBatch(db, events);
      return new Map(events.map((event, i) => [event, results[i]!]));
    },
    (event) => enqueue(db, event),
    { maxBatch: options.maxBatch ?? 500, maxInFlight: options.maxInFlight ?? 2, inOrder: true },
  );

  return {
    /** Stores the event unless its dedupe key is known; resolves once it is committed. */
    async enqueue(event: NewChangeEvent): Promise<EnqueueResult> {
      const result = await writer.load(event);
      if (!result) throw new Error(`no result for change event ${event.dedupeKey} (bug)`);
      return result;
    },
  };
}

export type InboxIntake = ReturnType<typeof createInboxIntake>;
