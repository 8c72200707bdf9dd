import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createCoalescer } from '../coalesce.ts';
import type { PrismaClient } from '../db/generated/client.ts';

// The erasure list (suppression table): what forgetPerson leaves behind so that an erased person
// stays erased. It holds keyed hashes (HMAC-SHA-256) of the person's identifiers, never the
// identifiers: an email, a Marketo id or a Dynamics id can be tested against it only with the key.
// The key is ERASURE_KEY, or without it one generated and stored at first start (then a database
// dump and a guess are enough to test; docs/operating.md says so). Intake, the sweep, the engine's
// matching and Sync Person ask `suppressed()` and skip whoever is listed, until an admin lifts the
// entry (liftErasure). Pseudonyms (a prefix of the hash) name an erased person in audit entries
// and log lines.

export const ERASURE_KEY_SETTING = 'erasure.key';
/** how stale the intake's copy of the list may be; the engine reads the table itself, under the record leases */
const CACHE_MS = 5_000;

export type IdentifierKind = 'EMAIL' | 'MARKETO_ID' | 'DYNAMICS_ID';
export interface Identifiers {
  emails?: readonly (string | null | undefined)[];
  marketoIds?: readonly (number | null | undefined)[];
  dynamicsIds?: readonly (string | null | undefined)[];
}

export interface SuppressionEntry {
  erasureId: string;
  createdAt: Date;
  /** the pseudonyms of the erased identifiers, by kind */
  identifiers: { kind: IdentifierKind; pseudonym: string }[];
}

export interface Suppressions {
  /** the pseudonym of one identifier: a stable, keyed, non-reversible label for logs and audit */
  pseudonym(kind: IdentifierKind, value: string | number): string;
  /** true when any of the identifiers is listed; `fresh` reads the table rather than the cached copy */
  suppressed(ids: Identifiers, options?: { fresh?: boolean }): Promise<boolean>;
  /** which of the given hashes' identifiers are listed (one statement), for a batch */
  listed(ids: Identifiers): Promise<Set<string>>;
  /** the hash under which an identifier is listed */
  hashOf(kind: IdentifierKind, value: string | number): string;
  /** lists every identifier under one erasure; answers its id */
  add(ids: Identifiers): Promise<{ erasureId: string; count: number }>;
  /** removes an erasure (by its id, or by any one identifier of it); answers how many identifiers it held */
  lift(target: { erasureId: string } | { kind: IdentifierKind; value: string | number }): Promise<number>;
  list(): Promise<SuppressionEntry[]>;
}

const normalise = (kind: IdentifierKind, value: string | number) => (kind === 'MARKETO_ID' ? String(value) : String(value).trim().toLowerCase());

function hashesOf(hash: (kind: IdentifierKind, value: string | number) => string, ids: Identifiers): string[] {
  const out: string[] = [];
  for (const email of ids.emails ?? []) if (email && email.trim()) out.push(hash('EMAIL', email));
  for (const id of ids.marketoIds ?? []) if (id !== null && id !== undefined && id >= 0) out.push(hash('MARKETO_ID', id));
  for (const id of ids.dynamicsIds ?? []) if (id) out.push(hash('DYNAMICS_ID', id));
  return [...new Set(out)];
}

export function createSuppressions(prisma: PrismaClient, key: string, options: { now?: () => number } = {}): Suppressions {
  const now = options.now ?? Date.now;
  const hashOf = (kind: IdentifierKind, value: string | number) => createHmac('sha256', key).update(`${kind}:${normalise(kind, value)}`).digest('hex');
  let cache: { hashes: Set<string>; at: number } | undefined;
  const current = async () => {
    if (!cache || now() - cache.at > CACHE_MS) {
      const rows = await prisma.suppression.findMany({ select: { hash: true } });
      cache = { hashes: new Set(rows.map((r) => r.hash)), at: now() };
    }
    return cache.hashes;
  };
  // Fresh reads of the list, shared: the engine asks once per batch, and the items one vendor answer
  // carried ask all at once. On the embedded database statements run one at a time, so a statement
  // each would space their writes out past the vendor call they could have shared. A statement
  // starts after the asks it carries, so it sees every erasure that finished before them.
  const freshReads = createCoalescer<string, true>(
    async (hashes) => new Map((await prisma.suppression.findMany({ where: { hash: { in: hashes } }, select: { hash: true } })).map((r) => [r.hash, true as const])),
    { maxBatch: 1_000, maxInFlight: 2 },
  );
  const listedIn = async (hashes: string[]) => new Set((await Promise.all(hashes.map(async (h) => ((await freshReads.load(h)) ? h : null)))).filter((h) => h !== null));

  return {
    hashOf,
    pseudonym: (kind, value) => `${kind === 'EMAIL' ? 'e' : kind === 'MARKETO_ID' ? 'm' : 'd'}~${hashOf(kind, value).slice(0, 12)}`,
    async suppressed(ids, { fresh = false } = {}) {
      const hashes = hashesOf(hashOf, ids);
      if (hashes.length === 0) return false;
      if (fresh) return (await listedIn(hashes)).size > 0;
      const listed = await current();
      return hashes.some((h) => listed.has(h));
    },
    listed: (ids) => listedIn(hashesOf(hashOf, ids)),
    async add(ids) {
      const erasureId = randomUUID();
      const rows: { hash: string; kind: IdentifierKind; erasureId: string }[] = [];
      for (const email of ids.emails ?? []) if (email && email.trim()) rows.push({ hash: hashOf('EMAIL', email), kind: 'EMAIL', erasureId });
      for (const id of ids.marketoIds ?? []) if (id !== null && id !== undefined && id >= 0) rows.push({ hash: hashOf('MARKETO_ID', id), kind: 'MARKETO_ID', erasureId });
      for (const id of ids.dynamicsIds ?? []) if (id) rows.push({ hash: hashOf('DYNAMICS_ID', id), kind: 'DYNAMICS_ID', erasureId });
      // an identifier already listed (an earlier erasure) stays under that one
      const { count } = await prisma.suppression.createMany({ data: rows, skipDuplicates: true });
      cache = undefined;
      return { erasureId, count };
    },
    async lift(target) {
      let erasureId: string | undefined;
      if ('erasureId' in target) erasureId = target.erasureId;
      else erasureId = (await prisma.suppression.findUnique({ where: { hash: hashOf(target.kind, target.value) }, select: { erasureId: true } }))?.erasureId;
      if (!erasureId) return 0;
      const { count } = await prisma.suppression.deleteMany({ where: { erasureId } });
      cache = undefined;
      return count;
    },
    async list() {
      const rows = await prisma.suppression.findMany({ orderBy: [{ createdAt: 'desc' }, { hash: 'asc' }] });
      const byErasure = new Map<string, SuppressionEntry>();
      for (const row of rows) {
        const entry = byErasure.get(row.erasureId) ?? { erasureId: row.erasureId, createdAt: row.createdAt, identifiers: [] };
        entry.identifiers.push({ kind: row.kind, pseudonym: `${row.kind === 'EMAIL' ? 'e' : row.kind === 'MARKETO_ID' ? 'm' : 'd'}~${row.hash.slice(0, 12)}` });
        byErasure.set(row.erasureId, entry);
      }
      return [...byErasure.values()];
    },
  };
}

/** ERASURE_KEY, or the key stored at first start (the same on every replica and restart). */
export async function erasureKey(prisma: PrismaClient, configured: string | undefined): Promise<string> {
  if (configured) return configured;
  const stored = await prisma.serviceSetting.findUnique({ where: { key: ERASURE_KEY_SETTING } });
  if (stored) return stored.value;
  await prisma.serviceSetting.createMany({ data: [{ key: ERASURE_KEY_SETTING, value: randomBytes(32).toString('base64url') }], skipDuplicates: true });
  return (await prisma.serviceSetting.findUniqueOrThrow({ where: { key: ERASURE_KEY_SETTING } })).value;
}

/** The events not about a listed person (by their ids), in one statement for the lot: the sweep's filter. */
export async function withoutSuppressed<T extends { marketoId?: number | null | undefined; dynamicsId?: string | null | undefined }>(
  suppressions: Suppressions,
  events: readonly T[],
): Promise<T[]> {
  if (events.length === 0) return [];
  const listed = await suppressions.listed({ marketoIds: events.map((e) => e.marketoId), dynamicsIds: events.map((e) => e.dynamicsId) });
  if (listed.size === 0) return [...events];
  return events.filter(
    (e) =>
      !(e.marketoId !== null && e.marketoId !== undefined && listed.has(suppressions.hashOf('MARKETO_ID', e.marketoId))) &&
      !(e.dynamicsId && listed.has(suppressions.hashOf('DYNAMICS_ID', e.dynamicsId))),
  );
}
