import DataLoader from 'dataloader';
import { Prisma, type Activity, type ActivityType, type ChangeEvent, type PrismaClient, type SyncLink } from '../db/generated/client.ts';
import { shownActivitiesSql } from '../sync/journal.ts';

// Per-request batching for nested fields: a page of 100 activities asking for their link, or a
// list of links asking for their activity log, costs one query per kind, not one per row.

/** A link's log: every entry of its link, its person or its Dynamics record (entries keep the ids). */
export interface LinkActivitiesKey {
  linkId: string;
  /** rows to fetch: page size + 1 */
  take: number;
  /** only ids below this (keyset cursor) */
  before: bigint | null;
  types: readonly ActivityType[] | null;
}

/** Events still open for a link (not DONE), newest first, at most this many per link. */
export const OPEN_EVENTS_PER_LINK = 20;

function byKey<K, V>(keys: readonly K[], rows: readonly V[], keyOf: (row: V) => K): (V | null)[] {
  const map = new Map<K, V>();
  for (const row of rows) map.set(keyOf(row), row);
  return keys.map((key) => map.get(key) ?? null);
}

export function createLoaders(prisma: PrismaClient) {
  const linkById = new DataLoader<string, SyncLink | null>(async (ids) =>
    byKey(ids, await prisma.syncLink.findMany({ where: { id: { in: [...ids] } } }), (row) => row.id),
  );
  const linkByMarketoId = new DataLoader<number, SyncLink | null>(async (ids) =>
    byKey(ids, await prisma.syncLink.findMany({ where: { marketoId: { in: [...ids] } } }), (row) => row.marketoId),
  );
  const linkByDynamicsId = new DataLoader<string, SyncLink | null>(async (ids) =>
    byKey(
      ids,
      await prisma.syncLink.findMany({ where: { dynamicsId: { in: ids.map((id) => id.toLowerCase()) } } }),
      (row) => row.dynamicsId,
    ),
  );

  const linkActivities = new DataLoader<LinkActivitiesKey, Activity[], string>(
    async (keys) => {
      // One query per distinct page shape (usually one): a lateral join takes each link's newest rows.
      const results = new Map<string, Activity[]>();
      const groups = new Map<string, LinkActivitiesKey[]>();
      for (const key of keys) {
        const shape = JSON.stringify([key.take, key.before?.toString() ?? null, key.types]);
        groups.set(shape, [...(groups.get(shape) ?? []), key]);
      }
      for (const group of groups.values()) {
        const { take, before, types } = group[0] as LinkActivitiesKey;
        const linkIds = [...new Set(group.map((key) => key.linkId))];
        const pairs = await prisma.$queryRaw<{ link_id: string; id: bigint }[]>`
          SELECT l.id::text AS link_id, a.id
            FROM sync_link l
            CROSS JOIN LATERAL (
              SELECT a.id FROM activity a
               WHERE (a."linkId" = l.id OR a."marketoId" = l."marketoId" OR a."dynamicsId" = l."dynamicsId")
                 AND ${shownActivitiesSql}
                 ${before !== null ? Prisma.sql`AND a.id < ${before}` : Prisma.empty}
                 ${types ? Prisma.sql`AND a.type::text = ANY(${`{${types.join(',')}}`}::text[])` : Prisma.empty}
               ORDER BY a.id DESC
               LIMIT ${take}) a
           WHERE l.id = ANY(${`{${linkIds.join(',')}}`}::uuid[])`;
        const rows = await prisma.activity.findMany({ where: { id: { in: [...new Set(pairs.map((p) => BigInt(p.id)))] } }, orderBy: { id: 'desc' } });
        const byId = new Map(rows.map((row) => [row.id, row]));
        for (const linkId of linkIds) {
          const ids = pairs.filter((p) => p.link_id === linkId).map((p) => BigInt(p.id));
          ids.sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
          results.set(linkId, ids.flatMap((id) => byId.get(id) ?? []));
        }
        for (const key of group) results.set(activitiesKey(key), results.get(key.linkId) ?? []);
      }
      return keys.map((key) => results.get(activitiesKey(key)) ?? []);
    },
    { cacheKeyFn: activitiesKey },
  );

  const linkOpenEvents = new DataLoader<string, ChangeEvent[]>(async (linkIds) => {
    const pairs = await prisma.$queryRaw<{ link_id: string; id: string }[]>`
      SELECT l.id::text AS link_id, e.id::text AS id
        FROM sync_link l
        CROSS JOIN LATERAL (
          SELECT e.id FROM change_event e
           WHERE e.status <> 'DONE'
             AND (e."linkId" = l.id OR e."marketoId" = l."marketoId" OR e."dynamicsId" = l."dynamicsId")
           ORDER BY e."receivedAt" DESC, e.id DESC
           LIMIT ${OPEN_EVENTS_PER_LINK}) e
       WHERE l.id = ANY(${`{${linkIds.join(',')}}`}::uuid[])`;
    const rows = await prisma.changeEvent.findMany({
      where: { id: { in: [...new Set(pairs.map((p) => p.id))] } },
      orderBy: [{ receivedAt: 'desc' }, { id: 'desc' }],
    });
    return linkIds.map((linkId) => {
      const ids = new Set(pairs.filter((p) => p.link_id === linkId).map((p) => p.id));
      return rows.filter((row) => ids.has(row.id));
    });
  });

  return {
    linkById,
    linkByMarketoId,
    linkByDynamicsId,
    linkActivities,
    linkOpenEvents,
    /** the link an activity or event is about: by its link id, else by the ids it carries */
    async linkFor(row: { linkId: string | null; marketoId: number | null; dynamicsId: string | null }): Promise<SyncLink | null> {
      if (row.linkId) {
        const link = await linkById.load(row.linkId);
        if (link) return link;
      }
      if (row.marketoId !== null) {
        const link = await linkByMarketoId.load(row.marketoId);
        if (link) return link;
      }
      return row.dynamicsId ? linkByDynamicsId.load(row.dynamicsId) : null;
    },
  };
}

function activitiesKey(key: LinkActivitiesKey): string {
  return JSON.stringify([key.linkId, key.take, key.before?.toString() ?? null, key.types]);
}

export type Loaders = ReturnType<typeof createLoaders>;
