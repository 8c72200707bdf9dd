import { ConnectorError } from '../connectors/errors.ts';
import type { DataverseClient, DataverseEntity, DataverseRecord } from '../connectors/dynamics/dataverse.client.ts';
import type { Db } from '../db/database.ts';
import type { NewChangeEvent } from '../inbox/inbox.ts';
import { fanoutEvent } from '../sync/fanout.ts';
import type { RelatedKind } from '../sync/related-fields.ts';
import { readCursor, writeCursor } from './cursors.ts';

// The sweep's half of fan-out (sync/fanout.ts): accounts and systemusers changed since the last
// sweep, each one FANOUT event. Accounts are read through change tracking (delta links), falling back
// to `modifiedon` when tracking is off or its token expired; systemusers by `modifiedon` (change
// tracking on the user table is not assumed). The first sweep only starts the cursor: the first
// sweep of leads and contacts (and a newly enabled mapping's back-fill) already syncs every link.
// Cursor scopes: DYNAMICS related:account | related:systemuser.

export type RelatedSweepClient = Pick<DataverseClient, 'trackChanges' | 'queryModifiedSince' | 'apiUrl'>;

const TABLES: Record<RelatedKind, { table: DataverseEntity; tracked: boolean }> = {
  account: { table: 'account', tracked: true },
  owner: { table: 'systemuser', tracked: false },
};

export interface RelatedSweepContext {
  prisma: Db;
  dataverse: RelatedSweepClient;
  runId: string;
  /** the modifiedon fallback re-reads this far before its watermark */
  overlapMs: number;
  enqueue: (events: NewChangeEvent[]) => Promise<void>;
  /** counts one Dataverse call */
  called: () => void;
  note: (text: string) => void;
  checkAbort: () => void;
}

function trackingLost(error: unknown): boolean {
  return error instanceof ConnectorError && error.system === 'dynamics' && (error.kind === 'delta_expired' || /not enabled for change tracking/i.test(error.message) || error.code === '0x80044351');
}

/** FANOUT events for changed rows, one per row version (a re-discovery is a duplicate). */
export function relatedChangeEvents(kind: RelatedKind, rows: readonly DataverseRecord[], runId: string): NewChangeEvent[] {
  const table = TABLES[kind].table;
  return rows.map((row) =>
    fanoutEvent(
      { kind, id: row.id.toLowerCase(), changedAttributes: [] },
      { origin: 'SWEEP', dedupeKey: `sweep:fanout:${table}:${row.id.toLowerCase()}:${row.versionnumber}`, payload: { runId, versionnumber: row.versionnumber } },
    ),
  );
}

const latestOf = (rows: readonly DataverseRecord[], since: Date): Date =>
  rows.reduce((latest, r) => {
    const at = new Date(r.modifiedon);
    return !Number.isNaN(at.getTime()) && at > latest ? at : latest;
  }, since);

/** Discovers the changed rows of one related table and queues their fan-out. */
export async function discoverRelated(ctx: RelatedSweepContext, kind: RelatedKind): Promise<{ changed: number }> {
  const { table, tracked } = TABLES[kind];
  const scope = `related:${table}`;
  const cursor = await readCursor(ctx.prisma, 'DYNAMICS', scope);
  const startedAt = new Date();
  let changed = 0;

  async function initialDeltaLink(): Promise<string | null> {
    if (!tracked) return null;
    try {
      let link: string | undefined;
      for await (const page of ctx.dataverse.trackChanges(table, [])) {
        ctx.called();
        ctx.checkAbort();
        link = page.deltaLink ?? link;
      }
      return link ?? null;
    } catch (error) {
      if (!trackingLost(error)) throw error;
      return null;
    }
  }

  if (!cursor) {
    await writeCursor(ctx.prisma, 'DYNAMICS', scope, { token: await initialDeltaLink(), watermark: startedAt });
    return { changed };
  }
  if (cursor.token && cursor.token.startsWith(ctx.dataverse.apiUrl)) {
    try {
      for await (const page of ctx.dataverse.trackChanges(table, [], cursor.token)) {
        ctx.called();
        ctx.checkAbort();
        changed += page.upserts.length;
        await ctx.enqueue(relatedChangeEvents(kind, page.upserts, ctx.runId));
        if (page.deltaLink) await writeCursor(ctx.prisma, 'DYNAMICS', scope, { token: page.deltaLink, watermark: latestOf(page.upserts, startedAt) });
      }
      return { changed };
    } catch (error) {
      if (!trackingLost(error)) throw error;
      ctx.note(`${table}: change tracking unavailable; fell back to modifiedon ge (watermark - ${ctx.overlapMs / 1000} s)`);
    }
  }
  const since = new Date((cursor.watermark ?? cursor.updatedAt).getTime() - ctx.overlapMs);
  let latest = startedAt;
  const token = await initialDeltaLink();
  for await (const rows of ctx.dataverse.queryModifiedSince(table, since, [])) {
    ctx.called();
    ctx.checkAbort();
    changed += rows.length;
    await ctx.enqueue(relatedChangeEvents(kind, rows, ctx.runId));
    latest = latestOf(rows, latest);
  }
  await writeCursor(ctx.prisma, 'DYNAMICS', scope, { token, watermark: latest });
  return { changed };
}
