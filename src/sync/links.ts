import type { Database, Db } from '../db/database.ts';
import type { LinkStatus, Prisma, PrismaClient, SyncLink } from '../db/generated/client.ts';
import { activityRow, recordActivities, type ActivityEntry } from './activities.ts';
import { settleIntent } from './create-intents.ts';
import type { BlockedValue, Side } from './merge.ts';
import type { LinkedEntity } from './policy.ts';
import type { CanonicalValue } from './values.ts';

// SyncLink rows as the engine sees them. The link is the memory of the sync: the last values both
// sides agreed on (the merge base), where each came from, and what a side refused.

export type { LinkStatus };

export interface FieldOrigin {
  side: Side;
  at: string;
}

export interface Link {
  id: string;
  marketoId: number;
  entity: LinkedEntity;
  dynamicsId: string;
  status: LinkStatus;
  snapshot: Record<string, CanonicalValue>;
  fieldOrigins: Record<string, FieldOrigin>;
  blocked: Record<string, BlockedValue>;
  dynamicsEtag: string | null;
  /** bumped by every commit; a commit planned from an older revision is refused */
  revision: number;
  lastSyncedAt: Date | null;
}

export function toLink(row: SyncLink): Link {
  return {
    id: row.id,
    marketoId: row.marketoId,
    entity: row.dynamicsEntity,
    dynamicsId: row.dynamicsId,
    status: row.status,
    snapshot: (row.snapshot ?? {}) as Record<string, CanonicalValue>,
    fieldOrigins: (row.fieldOrigins ?? {}) as unknown as Record<string, FieldOrigin>,
    blocked: (row.rejectedValues ?? {}) as unknown as Record<string, BlockedValue>,
    dynamicsEtag: row.dynamicsEtag,
    revision: row.revision,
    lastSyncedAt: row.lastSyncedAt,
  };
}

const json = (value: unknown) => value as Prisma.InputJsonValue;

export async function findLinks(
  db: Db,
  ids: { marketoIds?: readonly number[]; dynamicsIds?: readonly string[] },
): Promise<Link[]> {
  const or: Prisma.SyncLinkWhereInput[] = [];
  if (ids.marketoIds?.length) or.push({ marketoId: { in: [...ids.marketoIds] } });
  if (ids.dynamicsIds?.length) or.push({ dynamicsId: { in: ids.dynamicsIds.map((id) => id.toLowerCase()) } });
  if (or.length === 0) return [];
  return (await db.syncLink.findMany({ where: { OR: or } })).map(toLink);
}

export async function findLink(db: Db, where: { marketoId?: number; dynamicsId?: string }): Promise<Link | null> {
  const [link] = await findLinks(db, {
    ...(where.marketoId !== undefined ? { marketoIds: [where.marketoId] } : {}),
    ...(where.dynamicsId !== undefined ? { dynamicsIds: [where.dynamicsId] } : {}),
  });
  return link ?? null;
}

type NewLink = Pick<Link, 'marketoId' | 'entity' | 'dynamicsId' | 'snapshot' | 'fieldOrigins'> & { dynamicsEtag: string | null; dynamicsVersion: string | null; marketoVersion: string | null };

function newLinkRow(link: NewLink): Prisma.SyncLinkCreateManyInput {
  return {
    marketoId: link.marketoId,
    dynamicsEntity: link.entity,
    dynamicsId: link.dynamicsId.toLowerCase(),
    snapshot: json(link.snapshot),
    fieldOrigins: json(link.fieldOrigins),
    dynamicsEtag: link.dynamicsEtag,
    dynamicsVersion: link.dynamicsVersion,
    marketoVersion: link.marketoVersion,
    lastSyncedAt: new Date(),
  };
}

export async function createLink(db: Db, link: NewLink): Promise<Link> {
  return toLink(await db.syncLink.create({ data: newLinkRow(link) }));
}

/**
 * Creates many links with their log entries in one transaction (an initial sync links thousands
 * of records at once). All or none: a person or record linked meanwhile fails the whole statement,
 * and the caller then links one by one (linkOrRepoint) to tell which.
 */
export async function createLinks(db: PrismaClient, links: readonly { target: LinkTarget; entries: (link: Link) => ActivityEntry[] }[]): Promise<Link[]> {
  if (links.length === 0) return [];
  return db.$transaction(async (tx) => {
    const rows = await tx.syncLink.createManyAndReturn({ data: links.map((l) => newLinkRow({ ...l.target, marketoVersion: null })) });
    const byPerson = new Map(rows.map((row) => [row.marketoId, toLink(row)]));
    const created = links.map((l) => byPerson.get(l.target.marketoId)!);
    await recordActivities(
      tx,
      links.flatMap((l, i) => l.entries(created[i]!)),
    );
    for (const l of links) await settleCreate(tx, l.target);
    return created;
  });
}

export interface LinkUpdate {
  status?: LinkStatus;
  marketoId?: number;
  entity?: LinkedEntity;
  dynamicsId?: string;
  snapshot?: Record<string, CanonicalValue>;
  fieldOrigins?: Record<string, FieldOrigin>;
  blocked?: Record<string, BlockedValue>;
  dynamicsEtag?: string | null;
  dynamicsVersion?: string | null;
  marketoVersion?: string | null;
  synced?: boolean;
}

export async function updateLink(db: Db, id: string, update: LinkUpdate): Promise<Link> {
  const row = await db.syncLink.update({
    where: { id },
    data: {
      ...(update.status !== undefined ? { status: update.status } : {}),
      ...(update.marketoId !== undefined ? { marketoId: update.marketoId } : {}),
      ...(update.entity !== undefined ? { dynamicsEntity: update.entity } : {}),
      ...(update.dynamicsId !== undefined ? { dynamicsId: update.dynamicsId.toLowerCase() } : {}),
      ...(update.snapshot !== undefined ? { snapshot: json(update.snapshot) } : {}),
      ...(update.fieldOrigins !== undefined ? { fieldOrigins: json(update.fieldOrigins) } : {}),
      ...(update.blocked !== undefined ? { rejectedValues: json(update.blocked) } : {}),
      ...(update.dynamicsEtag !== undefined ? { dynamicsEtag: update.dynamicsEtag } : {}),
      ...(update.dynamicsVersion !== undefined ? { dynamicsVersion: update.dynamicsVersion } : {}),
      ...(update.marketoVersion !== undefined ? { marketoVersion: update.marketoVersion } : {}),
      ...(update.synced ? { lastSyncedAt: new Date() } : {}),
      revision: { increment: 1 },
    },
  });
  return toLink(row);
}

/** What a person is being linked to, and the merge base the link starts from. */
export interface LinkTarget {
  marketoId: number;
  entity: LinkedEntity;
  dynamicsId: string;
  snapshot: Record<string, CanonicalValue>;
  fieldOrigins: Record<string, FieldOrigin>;
  dynamicsEtag: string | null;
  dynamicsVersion: string | null;
  /** the create journaled for this link (create-intents.ts): settled in the link's transaction */
  intentId?: string | undefined;
}

/** Settles the target's create intent; a create settled elsewhere means another worker linked it: roll back. */
export async function settleCreate(tx: Db, target: Pick<LinkTarget, 'intentId' | 'marketoId'>): Promise<void> {
  if (!target.intentId) return;
  if (!(await settleIntent(tx, target.intentId, { state: 'DONE', marketoId: target.marketoId }))) {
    throw new Error(`create ${target.intentId} was settled by another worker`);
  }
}

/**
 * Links a person to a Dynamics record, with its log entries, in one transaction: a new link, or
 * the person's existing one re-pointed (its Dynamics record was deleted; Marketo's own sync also
 * gives the person a new record on the same link).
 */
export async function linkOrRepoint(db: PrismaClient, existing: Link | null, target: LinkTarget, entries: (link: Link) => ActivityEntry[]): Promise<Link> {
  return db.$transaction(async (tx) => {
    const link = existing
      ? await updateLink(tx, existing.id, {
          entity: target.entity,
          dynamicsId: target.dynamicsId,
          status: 'ACTIVE',
          snapshot: target.snapshot,
          fieldOrigins: target.fieldOrigins,
          blocked: {},
          dynamicsEtag: target.dynamicsEtag,
          dynamicsVersion: target.dynamicsVersion,
          synced: true,
        })
      : await createLink(tx, { ...target, marketoVersion: null });
    await recordActivities(tx, entries(link));
    await settleCreate(tx, target);
    return link;
  });
}

/** Where a sync left a link: the state its commit writes. */
export type SyncedLinkState = Required<Pick<LinkUpdate, 'status' | 'snapshot' | 'fieldOrigins' | 'blocked' | 'dynamicsEtag' | 'dynamicsVersion' | 'marketoVersion'>>;

/** Step 4 of the write protocol for one sync: the state to commit and the log that goes with it. */
export interface SyncCommit {
  linkId: string;
  /** the revision the plan was made from: the commit is refused if the link moved on since */
  revision: number;
  state: SyncedLinkState;
  /** entries to add as FINAL (what the apply step learned: refusals, or a plan without a journal) */
  entries: readonly ActivityEntry[];
  /**
   * this attempt's journaled entries: final once committed, or superseded by what happened (either
   * way no longer in doubt); `retire`: earlier attempts' entries this plan found no longer in doubt
   */
  journal: { final: readonly string[]; superseded: readonly string[]; retire?: readonly string[] };
}

/**
 * Commits many syncs in one statement, each only if its link is still at the revision it was
 * planned from (the fencing that keeps a worker whose lease ran out from saving a stale base).
 * Returns the ids of the links committed; the others' entries are not written and their journal
 * stays PENDING, for the re-plan to settle. A link deleted meanwhile makes the statement fail on
 * its entries' foreign key: the caller then commits one by one.
 */
export async function commitSyncs(db: Database, commits: readonly SyncCommit[]): Promise<Set<string>> {
  if (commits.length === 0) return new Set();
  const links = commits.map((c) => ({
    id: c.linkId,
    revision: c.revision,
    status: c.state.status,
    snapshot: c.state.snapshot,
    origins: c.state.fieldOrigins,
    blocked: c.state.blocked,
    etag: c.state.dynamicsEtag,
    dversion: c.state.dynamicsVersion,
    mversion: c.state.marketoVersion,
  }));
  const entries = commits.flatMap((c) => c.entries.map((e) => ({ ...activityRow(e), commitLink: c.linkId })));
  const journal = commits.flatMap((c) => [
    ...c.journal.final.map((id) => ({ id, link: c.linkId, state: 'FINAL' })),
    ...c.journal.superseded.map((id) => ({ id, link: c.linkId, state: 'SUPERSEDED' })),
    ...(c.journal.retire ?? []).map((id) => ({ id, link: c.linkId, state: 'KEEP' })),
  ]);
  const rows = await db.query<{ id: string }>(
    `WITH saved AS (
       UPDATE sync_link l
          SET status = s.status::"LinkStatus", snapshot = s.snapshot, "fieldOrigins" = s.origins, "rejectedValues" = s.blocked,
              "dynamicsEtag" = s.etag, "dynamicsVersion" = s.dversion, "marketoVersion" = s.mversion,
              revision = l.revision + 1, "lastSyncedAt" = now(), "updatedAt" = now()
         FROM jsonb_to_recordset($1::jsonb) AS s(id uuid, revision int, status text, snapshot jsonb, origins jsonb, blocked jsonb, etag text, dversion text, mversion text)
        WHERE l.id = s.id AND l.revision = s.revision
        RETURNING l.id
     ), logged AS (
       INSERT INTO activity (type, "linkId", "marketoId", "dynamicsEntity", "dynamicsId", fields, message, "changeEventId")
       SELECT e.type::"ActivityType", e."linkId", e."marketoId", e."dynamicsEntity"::"DynamicsEntity", e."dynamicsId", e.fields, e.message, e."changeEventId"
         FROM jsonb_to_recordset($2::jsonb) AS e(type text, "linkId" uuid, "marketoId" int, "dynamicsEntity" text, "dynamicsId" uuid, fields jsonb, message text, "changeEventId" uuid, "commitLink" uuid)
        WHERE e."commitLink" IN (SELECT id FROM saved)
     ), settled AS (
       -- committed by their own attempt, or retired by this plan: no longer in doubt (stale.ts). The
       -- attempt's own verdict stands even where another worker settled the entry meanwhile (from
       -- a read made before the write's answer came): the revision held, so nothing came between.
       -- The echoes kept as a witness (journal.ts) go with the doubt: they are a person's values.
       UPDATE activity a SET state = CASE WHEN j.state = 'KEEP' THEN a.state ELSE j.state::"ActivityState" END,
                             "plannedRevision" = NULL, "dynamicsEchoes" = NULL
         FROM jsonb_to_recordset($3::jsonb) AS j(id bigint, link uuid, state text)
        WHERE a.id = j.id AND j.link IN (SELECT id FROM saved)
     )
     SELECT id::text FROM saved`,
    [JSON.stringify(links), JSON.stringify(entries), JSON.stringify(journal)],
  );
  return new Set(rows.map((r) => r.id));
}
