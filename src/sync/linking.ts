import type { Database } from '../db/database.ts';
import { createCoalescer, createSplittingCoalescer } from '../coalesce.ts';
import type { ActivityEntry } from './activities.ts';
import { createLinks, findLinks, linkOrRepoint, type Link, type LinkTarget } from './links.ts';
import { tryLockEach, unlockAll } from './locks.ts';

// The database side of linking records (unlinked.ts) for every sync in flight: a person's lease,
// the look-up of its link and a new link each go out as one statement for all the records that
// reach that step together, as protocol.ts does for journals and commits. An initial sync links
// thousands of records at once; one by one, that was seven statements and a commit each.

type Lease = { keys: readonly string[]; holder: string };
type NewLink = { target: LinkTarget; entries: (link: Link) => ActivityEntry[] };

const BATCH = { maxBatch: 500, maxInFlight: 2 };

export function createLinkingStore(db: Database, leaseMs: number) {
  const leases = createCoalescer<Lease, boolean>(async (asked) => {
    const held = await tryLockEach(db.prisma, asked, leaseMs);
    return new Map(asked.map((lease) => [lease, held.has(lease.holder)]));
  }, BATCH);

  const releases = createCoalescer<Lease, true>(async (held) => {
    await unlockAll(db.prisma, held);
    return new Map(held.map((lease) => [lease, true as const]));
  }, BATCH);

  const linksByPerson = createCoalescer<number, Link | null>(async (marketoIds) => {
    const found = new Map((await findLinks(db.prisma, { marketoIds })).map((link) => [link.marketoId, link]));
    return new Map(marketoIds.map((id) => [id, found.get(id) ?? null]));
  }, BATCH);

  // Should the shared statement fail (a person or record linked meanwhile), each link is made on
  // its own, so that only the one in conflict fails.
  const creations = createSplittingCoalescer<NewLink, Link>(
    async (asked) => {
      const created = await createLinks(db.prisma, asked);
      return new Map(asked.map((item, i) => [item, created[i]!]));
    },
    (item) => linkOrRepoint(db.prisma, null, item.target, item.entries),
    BATCH,
  );

  return {
    /** Takes every key or none for `holder` (locks.ts tryLock, shared with others asking now). */
    async lock(keys: readonly string[], holder: string): Promise<boolean> {
      return (await leases.load({ keys, holder })) === true;
    },
    async unlock(keys: readonly string[], holder: string): Promise<void> {
      if (keys.length > 0) await releases.load({ keys, holder });
    },
    /** The person's link, if any (read when asked: after the lease it was asked under). */
    async findByPerson(marketoId: number): Promise<Link | null> {
      return (await linksByPerson.load(marketoId)) ?? null;
    },
    /** Links a person to a record with its log entries (a new link: see linkOrRepoint for a re-point). */
    async create(target: LinkTarget, entries: (link: Link) => ActivityEntry[]): Promise<Link> {
      const result = await creations.load({ target, entries });
      if (!result) throw new Error(`no link was made for person ${target.marketoId}`);
      return result;
    },
  };
}

export type LinkingStore = ReturnType<typeof createLinkingStore>;
