import { randomUUID } from 'node:crypto';
import type { Db } from '../db/database.ts';
import { backoffMs, retrying, type RetriesTaken, type RetryVerdict } from '../retry.ts';

// Per-record leases across replicas (see RecordLock in schema.prisma). A holder that dies simply
// lets its lease expire; a holder that outlives its lease loses it to the next claimer, which is
// safe because every sync re-reads both sides and writes Dynamics with If-Match.

export const personKey = (marketoId: number) => `mkto:${marketoId}`;
export const recordKey = (dynamicsId: string) => `dyn:${dynamicsId.toLowerCase()}`;

/** A holder name for one piece of work: leases are not re-entrant, even within one process. */
export const lockHolder = (owner: string) => `${owner}:${randomUUID()}`;

/** Takes every key or none, in one statement: no partial hold can survive a failed attempt. */
export async function tryLock(db: Db, keys: readonly string[], owner: string, leaseMs: number): Promise<boolean> {
  return (await tryLockEach(db, [{ keys, holder: owner }], leaseMs)).has(owner);
}

/**
 * Takes the keys of many pieces of work in one statement, each all or none; returns the holders
 * that got all of theirs. A key wanted twice goes to the first asker: the second is busy.
 */
export async function tryLockEach(db: Db, requests: readonly { keys: readonly string[]; holder: string }[], leaseMs: number): Promise<Set<string>> {
  const claimed = new Set<string>();
  const asked: { keys: string[]; holder: string }[] = [];
  for (const r of requests) {
    const keys = [...new Set(r.keys)];
    if (keys.some((k) => claimed.has(k))) continue;
    keys.forEach((k) => claimed.add(k));
    asked.push({ keys, holder: r.holder });
  }
  // rows are locked in key order by every statement here, so two of them never wait on each other in a cycle
  const wanted = asked.flatMap((r) => r.keys.map((key) => ({ key, holder: r.holder }))).sort((a, b) => (a.key < b.key ? -1 : 1));
  const keys = wanted.map((w) => w.key);
  const owners = wanted.map((w) => w.holder);
  if (keys.length === 0) return new Set(asked.map((r) => r.holder));
  const taken = await db.$queryRaw<{ key: string; owner: string }[]>`
    INSERT INTO record_lock (key, owner, "expiresAt")
    SELECT k, o, now() + make_interval(secs => ${leaseMs / 1000}::float8) FROM unnest(${keys}::text[], ${owners}::text[]) WITH ORDINALITY AS w(k, o, n)
     ORDER BY n
    ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, "expiresAt" = EXCLUDED."expiresAt"
     WHERE record_lock."expiresAt" < now()
    RETURNING key, owner`;
  const takenBy = new Map<string, string[]>();
  for (const t of taken) takenBy.set(t.owner, [...(takenBy.get(t.owner) ?? []), t.key]);
  const held = new Set<string>();
  const partial: { keys: string[]; holder: string }[] = [];
  for (const r of asked) {
    const got = takenBy.get(r.holder) ?? [];
    if (got.length === r.keys.length) held.add(r.holder);
    else if (got.length > 0) partial.push({ keys: got, holder: r.holder });
  }
  await unlockAll(db, partial);
  return held;
}

export async function unlock(db: Db, keys: readonly string[], owner: string): Promise<void> {
  if (keys.length === 0) return;
  await db.$executeRaw`DELETE FROM record_lock WHERE key = ANY(${[...keys]}::text[]) AND owner = ${owner}`;
}

// A release that fails would leave its leases to the heartbeat, which renews them as long as this
// replica lives: the records would stay busy. A deadlock victim or a dropped connection succeeds
// on a second try.
const RELEASE_RETRIES = 3;
const releaseRetry = (_error: unknown, taken: RetriesTaken): RetryVerdict => {
  const released = taken['release'] ?? 0;
  if (released >= RELEASE_RETRIES) return { retry: false };
  return { retry: true, as: 'release', waitMs: backoffMs({ baseMs: 50, maxMs: 1_000, jitter: 'equal' }, released) };
};

/** Releases many holders' keys at once (the end of a batch). */
export async function unlockAll(db: Db, held: readonly { keys: readonly string[]; holder: string }[]): Promise<void> {
  const keys = held.flatMap((h) => h.keys);
  const owners = held.flatMap((h) => h.keys.map(() => h.holder));
  if (keys.length === 0) return;
  await retrying(() => db.$executeRaw`
    DELETE FROM record_lock l
     WHERE l.key IN (SELECT r.key FROM record_lock r JOIN unnest(${keys}::text[], ${owners}::text[]) AS h(key, owner) ON r.key = h.key AND r.owner = h.owner
                      ORDER BY r.key FOR UPDATE OF r)`, { onError: releaseRetry });
}

/** Waits for the keys (the synchronous Sync Person webhook must not give up at the first try). */
export async function lockWithin(
  db: Db,
  keys: readonly string[],
  owner: string,
  options: { leaseMs: number; waitMs: number; pollMs?: number; now?: () => number },
): Promise<boolean> {
  const now = options.now ?? Date.now;
  const deadline = now() + options.waitMs;
  return retrying(() => tryLock(db, keys, owner, options.leaseMs), {
    // a busy key is an answer, not a failure: poll again until the deadline
    onResult: (held) => (held || now() >= deadline ? { retry: false } : { retry: true, as: 'busy', waitMs: options.pollMs ?? 25 }),
  });
}

/**
 * Extends every lease held by this replica's work (holders are `<owner>:<uuid>`, see lockHolder);
 * returns the holders whose leases it extended. A lease another statement is releasing right now
 * is skipped, not waited for (see renewEventLeases: waiting there while holding others is how a
 * heartbeat deadlocks). A lease that already ran out is not revived: another worker may hold it.
 */
export async function renewRecordLeases(db: Db, owner: string, leaseMs: number): Promise<Set<string>> {
  const renewed = await db.$queryRaw<{ owner: string }[]>`
    UPDATE record_lock l SET "expiresAt" = now() + make_interval(secs => ${leaseMs / 1000}::float8)
      FROM (SELECT key FROM record_lock WHERE starts_with(owner, ${`${owner}:`}) AND "expiresAt" >= now()
             ORDER BY key FOR UPDATE SKIP LOCKED) held
     WHERE l.key = held.key
    RETURNING l.owner`;
  return new Set(renewed.map((r) => r.owner));
}

/**
 * The fence of the write protocol (DESIGN "Production is several replicas"): for each holder, true
 * when it still holds every one of its keys, and then its leases are extended, in one statement
 * for all the work whose writes go out in the same vendor call. A holder's name is unique to one
 * acquisition (lockHolder), so it is the fencing token: once a lease ran out and another worker took
 * it, or it ran out at all, the old holder's writes are refused.
 */
export async function renewIfHeld(db: Db, held: readonly { keys: readonly string[]; holder: string }[], leaseMs: number): Promise<Set<string>> {
  const keys = held.flatMap((h) => h.keys);
  const owners = held.flatMap((h) => h.keys.map(() => h.holder));
  if (keys.length === 0) return new Set();
  // all or nothing per holder: a holder that lost one key has its other leases left to run out
  const renewed = await db.$queryRaw<{ key: string; owner: string }[]>`
    WITH asked AS (SELECT DISTINCT key, owner FROM unnest(${keys}::text[], ${owners}::text[]) AS h(key, owner)),
         mine AS (SELECT r.key, r.owner FROM record_lock r JOIN asked h ON r.key = h.key AND r.owner = h.owner
                   WHERE r."expiresAt" > now() ORDER BY r.key FOR UPDATE OF r),
         whole AS (SELECT a.owner FROM (SELECT owner, count(*) AS n FROM asked GROUP BY owner) a
                     JOIN (SELECT owner, count(*) AS n FROM mine GROUP BY owner) m ON a.owner = m.owner AND a.n = m.n)
    UPDATE record_lock l SET "expiresAt" = now() + make_interval(secs => ${leaseMs / 1000}::float8)
      FROM mine WHERE l.key = mine.key AND mine.owner IN (SELECT owner FROM whole)
    RETURNING l.key, l.owner`;
  const got = new Map<string, number>();
  for (const r of renewed) got.set(r.owner, (got.get(r.owner) ?? 0) + 1);
  return new Set(held.filter((h) => h.keys.length > 0 && got.get(h.holder) === new Set(h.keys).size).map((h) => h.holder));
}

/** The holders that still hold every one of their keys (a plain read: it waits for no lock). */
export async function heldBy(db: Db, held: readonly { keys: readonly string[]; holder: string }[]): Promise<Set<string>> {
  const keys = held.flatMap((h) => h.keys);
  const owners = held.flatMap((h) => h.keys.map(() => h.holder));
  if (keys.length === 0) return new Set();
  const rows = await db.$queryRaw<{ owner: string; n: number }[]>`
    SELECT r.owner, count(*)::int AS n FROM record_lock r JOIN unnest(${keys}::text[], ${owners}::text[]) AS h(key, owner) ON r.key = h.key AND r.owner = h.owner
     WHERE r."expiresAt" > now() GROUP BY r.owner`;
  const got = new Map(rows.map((r) => [r.owner, r.n]));
  return new Set(held.filter((h) => h.keys.length > 0 && got.get(h.holder) === new Set(h.keys).size).map((h) => h.holder));
}

/**
 * Drops every record lease (start-up on the embedded database: one process owns it by
 * construction, so any lease in it belongs to a run that is gone).
 */
export async function dropAllRecordLeases(db: Db): Promise<number> {
  return db.$executeRaw`DELETE FROM record_lock`;
}
