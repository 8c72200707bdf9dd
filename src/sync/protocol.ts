import type { Database } from '../db/database.ts';
import type { ActivityEntry } from './activities.ts';
import { createCoalescer, createSplittingCoalescer } from '../coalesce.ts';
import { journal } from './journal.ts';
import { commitSyncs, type SyncCommit } from './links.ts';

// The database side of the write protocol for every sync in flight: journal (step 2) and commit
// (step 4) each go out as one statement for all syncs that reach that step together.

export function createProtocolStore(db: Database) {
  const journalWriter = createCoalescer<readonly ActivityEntry[], string[]>(
    async (groups) => {
      const ids = await journal(db, groups.flat());
      const result = new Map<readonly ActivityEntry[], string[]>();
      let at = 0;
      for (const group of groups) {
        result.set(group, ids.slice(at, at + group.length));
        at += group.length;
      }
      return result;
    },
    { maxBatch: 500, maxInFlight: 2 },
  );

  // Should the shared statement fail (a link deleted meanwhile breaks its entries' foreign key),
  // each commit is tried on its own: no other sync loses its log.
  const committer = createSplittingCoalescer<SyncCommit, boolean>(
    async (commits) => {
      const saved = await commitSyncs(db, commits);
      return new Map(commits.map((c) => [c, saved.has(c.linkId)]));
    },
    async (c) => (await commitSyncs(db, [c])).has(c.linkId),
    { maxBatch: 500, maxInFlight: 2 },
  );

  return {
    /** Stores a plan's entries as PENDING before its writes; their ids, in order. */
    async journal(entries: readonly ActivityEntry[]): Promise<string[]> {
      if (entries.length === 0) return [];
      return (await journalWriter.load(entries)) ?? [];
    },
    /** Commits one sync; false when the link moved on since the plan (re-plan from fresh reads). */
    async commit(commit: SyncCommit): Promise<boolean> {
      return (await committer.load(commit)) === true;
    },
  };
}

export type ProtocolStore = ReturnType<typeof createProtocolStore>;
