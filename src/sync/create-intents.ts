import type { Db } from '../db/database.ts';
import type { CreateDirection, CreateIntent as CreateIntentRow, Prisma, PrismaClient } from '../db/generated/client.ts';
import { FencedOutError } from './fence.ts';
import type { LinkedEntity } from './policy.ts';
import type { CanonicalRecordFields } from './values.ts';

// The create journal (create_intent rows): a create is written here, under the source record's
// lease, before it is sent, and settled in the transaction that links what it created. An intent
// still OPEN is a create that may or may not have reached the vendor: the next holder of the
// source record finishes it (creates.ts) before doing anything else for that record.

export type { CreateDirection };

export interface CreateIntent {
  id: string;
  direction: CreateDirection;
  /** to Dynamics: the source person; to Marketo: null until the person is known */
  marketoId: number | null;
  entity: LinkedEntity;
  /** to Dynamics: the client-chosen primary key of the record; to Marketo: the source record */
  dynamicsId: string;
  /** to Marketo: the look-up key of the person created */
  email: string | null;
  source: CanonicalRecordFields;
  sent: CanonicalRecordFields;
  assignTo: string | null;
  changeEventId: string | null;
  createdAt: Date;
}

export type NewCreateIntent = Omit<CreateIntent, 'id' | 'createdAt'>;

function toIntent(row: CreateIntentRow): CreateIntent {
  return {
    id: row.id,
    direction: row.direction,
    marketoId: row.marketoId,
    entity: row.dynamicsEntity,
    dynamicsId: row.dynamicsId,
    email: row.email,
    source: row.source as CanonicalRecordFields,
    sent: row.sent as CanonicalRecordFields,
    assignTo: row.assignTo,
    changeEventId: row.changeEventId,
    createdAt: row.createdAt,
  };
}

const json = (value: unknown) => value as Prisma.InputJsonValue;

function insert(db: Db, intent: NewCreateIntent) {
  return db.createIntent.create({
    data: {
      direction: intent.direction,
      marketoId: intent.marketoId,
      dynamicsEntity: intent.entity,
      dynamicsId: intent.dynamicsId.toLowerCase(),
      email: intent.email,
      source: json(intent.source),
      sent: json(intent.sent),
      assignTo: intent.assignTo,
      changeEventId: intent.changeEventId,
    },
  });
}

/**
 * Journals a create before it is sent, only while `lease` (the source record's) is still held: its
 * rows stay locked until the intent is stored, so a worker taking the lease over waits and then
 * finds the intent. A worker that lost its lease (a pause) journals nothing: it would otherwise
 * leave an intent the next holder finishes beside the one it journals itself, two records.
 */
export async function journalCreate(db: PrismaClient, intent: NewCreateIntent, lease?: { holder: string; keys: readonly string[] }): Promise<CreateIntent> {
  if (!lease) return toIntent(await insert(db, intent));
  return db.$transaction(async (tx) => {
    const keys = [...new Set(lease.keys)];
    const held = await tx.$queryRaw<{ key: string }[]>`
      SELECT key FROM record_lock WHERE key = ANY(${keys}::text[]) AND owner = ${lease.holder} AND "expiresAt" > now() ORDER BY key FOR UPDATE`;
    if (held.length !== keys.length) throw new FencedOutError('the record lease was lost before the create was journaled; nothing was sent');
    return toIntent(await insert(tx, intent));
  });
}

/**
 * Open intents whose source or target is one of these records or persons (the webhook and the
 * sweep ask in batches: a record the sync created and never linked is not an echo to drop).
 */
export async function openIntents(db: Db, ids: { marketoIds?: readonly number[]; dynamicsIds?: readonly string[] }): Promise<CreateIntent[]> {
  const or: Prisma.CreateIntentWhereInput[] = [];
  if (ids.marketoIds?.length) or.push({ marketoId: { in: [...ids.marketoIds] } });
  if (ids.dynamicsIds?.length) or.push({ dynamicsId: { in: ids.dynamicsIds.map((id) => id.toLowerCase()) } });
  if (or.length === 0) return [];
  const rows = await db.createIntent.findMany({ where: { state: 'OPEN', OR: or }, orderBy: { createdAt: 'asc' } });
  return rows.map(toIntent);
}

/** Sync Person's open create for this person, if any (one at a time: it runs under the person's lease). */
export async function openIntentToDynamics(db: Db, marketoId: number): Promise<CreateIntent | null> {
  const row = await db.createIntent.findFirst({ where: { state: 'OPEN', direction: 'TO_DYNAMICS', marketoId }, orderBy: { createdAt: 'asc' } });
  return row ? toIntent(row) : null;
}

/** The open create of, or from, this Dynamics record (its key or its source), if any. */
export async function openIntentOfRecord(db: Db, dynamicsId: string): Promise<CreateIntent | null> {
  const [intent] = await openIntents(db, { dynamicsIds: [dynamicsId] });
  return intent ?? null;
}

/** Open intents journaled before `before`: creates whose worker is gone (the sweep hands them to the inbox). */
export async function staleIntents(db: Db, before: Date, limit: number): Promise<CreateIntent[]> {
  const rows = await db.createIntent.findMany({ where: { state: 'OPEN', createdAt: { lt: before } }, orderBy: { createdAt: 'asc' }, take: limit });
  return rows.map(toIntent);
}

/** Settles an intent: DONE in the link's transaction, FAILED when there is nothing left to finish. */
export async function settleIntent(db: Db, id: string, settled: { state: 'DONE' | 'FAILED'; marketoId?: number; note?: string }): Promise<boolean> {
  const { count } = await db.createIntent.updateMany({
    where: { id, state: 'OPEN' },
    data: { state: settled.state, settledAt: new Date(), ...(settled.marketoId !== undefined ? { marketoId: settled.marketoId } : {}), ...(settled.note ? { note: settled.note } : {}) },
  });
  return count === 1;
}
