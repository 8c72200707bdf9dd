import type { Db } from '../db/database.ts';
import type { SyncSide } from '../db/generated/client.ts';
import type { LinkedEntity } from '../sync/policy.ts';

// Where change discovery left off (SyncCursor rows). Scopes:
//   DYNAMICS lead | contact        delta link (token) + modifiedon watermark for the fallback
//   MARKETO  leadchanges | deletedleads   paging token; watermark = when the feed was last read
//   DYNAMICS full:LEAD | full:CONTACT     a full reconciliation in progress: token = last SyncLink id
//                                         done (keyset position), null when none is pending;
//                                         watermark = when it was requested
// A cursor is written only after the events it covers are in the inbox, so a crash re-discovers.

export interface Cursor {
  token: string | null;
  watermark: Date | null;
  updatedAt: Date;
}

export const dynamicsScope = (entity: LinkedEntity) => (entity === 'LEAD' ? 'lead' : 'contact');
export const fullScope = (entity: LinkedEntity) => `full:${entity}`;
/** the keyset position before every SyncLink id */
export const FULL_START = '00000000-0000-0000-0000-000000000000';

export async function readCursor(db: Db, system: SyncSide, scope: string): Promise<Cursor | null> {
  const row = await db.syncCursor.findUnique({ where: { system_scope: { system, scope } } });
  return row ? { token: row.token, watermark: row.watermark, updatedAt: row.updatedAt } : null;
}

export async function writeCursor(db: Db, system: SyncSide, scope: string, value: { token: string | null; watermark?: Date | null }): Promise<void> {
  const data = { token: value.token, ...(value.watermark !== undefined ? { watermark: value.watermark } : {}) };
  await db.syncCursor.upsert({
    where: { system_scope: { system, scope } },
    create: { system, scope, ...data },
    update: data,
  });
}

/** Asks for a full reconciliation of an entity; one already in progress keeps its position. */
export async function requestFullReconcile(db: Db, entity: LinkedEntity): Promise<void> {
  await db.$executeRaw`
    INSERT INTO sync_cursor (system, scope, token, watermark, "updatedAt")
    VALUES ('DYNAMICS'::"SyncSide", ${fullScope(entity)}, ${FULL_START}, now(), now())
    ON CONFLICT (system, scope) DO UPDATE SET token = ${FULL_START}, watermark = now(), "updatedAt" = now()
     WHERE sync_cursor.token IS NULL`;
}
