import type { DataverseRecord } from '../connectors/dynamics/dataverse.client.ts';
import { ConnectorError } from '../connectors/errors.ts';
import type { NewChangeEvent } from '../inbox/inbox.ts';
import { openIntents } from '../sync/create-intents.ts';
import type { LinkedEntity } from '../sync/policy.ts';
import { dynamicsScope, readCursor, requestFullReconcile, writeCursor, type Cursor } from './cursors.ts';
import { describe, dvEntity, type SweepRun, type SweepSettings } from './run.ts';

// The sweep's Dynamics discovery, per entity (lead, contact): follow the stored change-tracking
// delta link; without one (first sweep, token expired or lost, tracking off) start change tracking
// again and catch up with `modifiedon ge (watermark - overlap)`. Each page becomes inbox events;
// the cursor moves only after what it covers is enqueued.

const TRACKING_DISABLED = '0x80044351';

function trackingUnavailable(error: unknown): 'expired' | 'disabled' | null {
  if (!(error instanceof ConnectorError) || error.system !== 'dynamics') return null;
  if (error.kind === 'delta_expired') return 'expired';
  if (error.code === TRACKING_DISABLED || /not enabled for change tracking/i.test(error.message)) return 'disabled';
  return null;
}

type LinkState = { dynamicsId: string; dynamicsVersion: string | null; status: string };

/** What one page says: a change per new row version, a delete per tombstone of a live link; the sync's own writes dropped. */
function pageEvents(
  page: { entity: LinkedEntity; rows: DataverseRecord[]; deletedIds: string[] },
  known: { links: Map<string, LinkState>; syncUser: string | null; unfinished: Set<string>; seen: Set<string> },
  run: SweepRun,
): { events: NewChangeEvent[]; latest: Date | null } {
  const { entity } = page;
  const { counts, runId } = run;
  const { links, syncUser: user, unfinished, seen } = known;
  let latest: Date | null = null;
  const events: NewChangeEvent[] = [];
  for (const row of page.rows) {
    const id = row.id.toLowerCase();
    const modified = new Date(row.modifiedon);
    if (!Number.isNaN(modified.getTime()) && (!latest || modified > latest)) latest = modified;
    const key = `${id}:${row.versionnumber}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (user && row.modifiedby?.toLowerCase() === user && !unfinished.has(id)) {
      counts.echoesDropped++;
      continue;
    }
    const link = links.get(id);
    if (link && link.dynamicsVersion === String(row.versionnumber)) {
      counts.alreadySynced++;
      continue;
    }
    counts.dynamicsChanges++;
    events.push({
      source: 'DYNAMICS',
      origin: 'SWEEP',
      operation: 'UPDATE',
      dynamicsEntity: entity,
      dynamicsId: id,
      payload: { runId, versionnumber: row.versionnumber, modifiedon: row.modifiedon },
      dedupeKey: `sweep:dv:${dvEntity(entity)}:${id}:${row.versionnumber}`,
    });
  }
  for (const raw of page.deletedIds) {
    const id = raw.toLowerCase();
    const link = links.get(id);
    // an unlinked record's deletion concerns nobody; a link already marked needs nothing
    if (!link || link.status === 'DELETED_IN_DYNAMICS') continue;
    counts.dynamicsDeletes++;
    events.push({
      source: 'DYNAMICS',
      origin: 'SWEEP',
      operation: 'DELETE',
      dynamicsEntity: entity,
      dynamicsId: id,
      payload: { runId },
      dedupeKey: `sweep:dv:${dvEntity(entity)}:${id}:deleted`,
    });
  }
  return { events, latest };
}

/** One run's Dynamics discovery: `discover(entity)` for lead and contact. */
export function dynamicsDiscovery(s: SweepSettings, run: SweepRun) {
  const { prisma, options, overlapMs } = s;
  const dataverse = options.dataverse;
  const { counts, notes, checkAbort, enqueueAll } = run;

  let syncUser: string | null | undefined;
  async function dynamicsSyncUser(): Promise<string | null> {
    if (syncUser === undefined) {
      try {
        syncUser = (await options.syncUserId()).toLowerCase();
      } catch (error) {
        syncUser = null;
        notes.push(`the Dynamics sync user is unknown (${describe(error)}); its echoes are left to the merge`);
      }
    }
    return syncUser;
  }

  /** Turns one page of Dataverse rows (and tombstones) into inbox events. */
  async function enqueueDynamicsPage(entity: LinkedEntity, rows: DataverseRecord[], deletedIds: string[], seen: Set<string>): Promise<Date | null> {
    const user = await dynamicsSyncUser();
    const ids = [...rows.map((r) => r.id.toLowerCase()), ...deletedIds.map((id) => id.toLowerCase())];
    const links = ids.length
      ? await prisma.syncLink.findMany({ where: { dynamicsId: { in: ids } }, select: { dynamicsId: true, dynamicsVersion: true, status: true } })
      : [];
    // a row the sync created and never linked (a crash after the create) is not an echo to drop
    const echoIds = user ? rows.filter((r) => r.modifiedby?.toLowerCase() === user).map((r) => r.id) : [];
    const unfinished = new Set((await openIntents(prisma, { dynamicsIds: echoIds })).map((i) => i.dynamicsId));
    const { events, latest } = pageEvents(
      { entity, rows, deletedIds },
      { links: new Map(links.map((l) => [l.dynamicsId, l])), syncUser: user, unfinished, seen },
      run,
    );
    await enqueueAll(events);
    return latest;
  }

  /**
   * The initial change-tracking read: every current row; yields the delta link. On the very first
   * sweep the rows are enqueued too (the initial sync: the engine matches by email, then creates);
   * after a lost token they are not, the modifiedon catch-up and the reconciliation cover the gap.
   */
  async function initialDeltaLink(entity: LinkedEntity, enqueueRows: boolean): Promise<string> {
    let deltaLink: string | undefined;
    const seen = new Set<string>();
    for await (const page of dataverse.trackChanges(dvEntity(entity), ['emailaddress1'])) {
      counts.dynamicsCalls++;
      checkAbort();
      if (enqueueRows) await enqueueDynamicsPage(entity, page.upserts, [], seen);
      deltaLink = page.deltaLink ?? deltaLink;
    }
    if (!deltaLink) throw new Error(`change tracking of ${dvEntity(entity)} answered without a delta link`);
    return deltaLink;
  }

  /** `modifiedon ge (watermark - overlap)`, stably ordered, de-duplicated by id + version. */
  async function modifiedSince(entity: LinkedEntity, watermark: Date): Promise<Date> {
    const since = new Date(watermark.getTime() - overlapMs);
    const seen = new Set<string>();
    let latest = watermark;
    for await (const rows of dataverse.queryModifiedSince(dvEntity(entity), since, ['emailaddress1'])) {
      counts.dynamicsCalls++;
      checkAbort();
      const pageLatest = await enqueueDynamicsPage(entity, rows, [], seen);
      if (pageLatest && pageLatest > latest) latest = pageLatest;
    }
    return latest;
  }

  /** Follows the stored delta link to its end; 'lost' when the token expired or tracking was turned off. */
  async function followDeltaLink(entity: LinkedEntity, token: string, watermark: Date | null, startedAt: Date): Promise<'done' | 'lost'> {
    const label = dvEntity(entity);
    const seen = new Set<string>();
    let latest = watermark;
    try {
      for await (const page of dataverse.trackChanges(label, ['emailaddress1'], token)) {
        counts.dynamicsCalls++;
        checkAbort();
        const pageLatest = await enqueueDynamicsPage(entity, page.upserts, page.deletedIds, seen);
        if (pageLatest && (!latest || pageLatest > latest)) latest = pageLatest;
        // the delta link comes with the last page: stored after everything it covers is enqueued
        if (page.deltaLink) await writeCursor(prisma, 'DYNAMICS', dynamicsScope(entity), { token: page.deltaLink, watermark: latest ?? startedAt });
      }
      return 'done';
    } catch (error) {
      const reason = trackingUnavailable(error);
      if (!reason) throw error;
      notes.push(
        reason === 'expired'
          ? `${label}: the change-tracking token expired; fell back to modifiedon ge (watermark - ${overlapMs / 1000} s), re-initialised change tracking, and reconciles every linked ${label} (deletes in the gap are not in modifiedon)`
          : `${label}: change tracking is disabled on the table; fell back to modifiedon ge (watermark - ${overlapMs / 1000} s) (deletes are seen by webhooks and full reconciliations only)`,
      );
      await requestFullReconcile(prisma, entity);
      return 'lost';
    }
  }

  /**
   * No delta link (first run, token lost, or tracking off): try to start change tracking, then
   * catch up with modifiedon from the watermark (rows changed during the initial read included).
   */
  async function restartDiscovery(entity: LinkedEntity, cursor: Cursor | null, startedAt: Date): Promise<void> {
    const label = dvEntity(entity);
    const scope = dynamicsScope(entity);
    let deltaLink: string | null = null;
    try {
      deltaLink = await initialDeltaLink(entity, !cursor);
    } catch (error) {
      if (trackingUnavailable(error) !== 'disabled') throw error;
      if (!cursor?.token) notes.push(`${label}: change tracking is disabled on the table; using modifiedon ge (watermark - ${overlapMs / 1000} s)`);
    }
    if (!cursor) {
      notes.push(`${label}: first sweep; change discovery initialised${deltaLink ? ' (change tracking; every current row queued for the initial sync)' : ''}, every linked ${label} reconciled`);
      await requestFullReconcile(prisma, entity);
      // without change tracking the initial sync is every row modified since the epoch
      const latest = deltaLink ? startedAt : await modifiedSince(entity, new Date(overlapMs));
      await writeCursor(prisma, 'DYNAMICS', scope, { token: deltaLink, watermark: latest > startedAt ? latest : startedAt });
      return;
    }
    const latest = await modifiedSince(entity, cursor.watermark ?? cursor.updatedAt);
    await writeCursor(prisma, 'DYNAMICS', scope, { token: deltaLink, watermark: latest > startedAt ? latest : startedAt });
  }

  async function discover(entity: LinkedEntity): Promise<void> {
    const label = dvEntity(entity);
    const cursor = await readCursor(prisma, 'DYNAMICS', dynamicsScope(entity));
    const startedAt = new Date();
    if (cursor?.token && !cursor.token.startsWith(dataverse.apiUrl)) {
      // the delta link belongs to another environment (DYNAMICS_URL changed): a lost cursor
      notes.push(`${label}: the stored delta link is for another Dynamics environment; change tracking re-initialised and every linked ${label} reconciled`);
      cursor.token = null;
      await requestFullReconcile(prisma, entity);
    }
    if (cursor?.token && (await followDeltaLink(entity, cursor.token, cursor.watermark, startedAt)) === 'done') return;
    await restartDiscovery(entity, cursor, startedAt);
  }

  return { discover };
}
