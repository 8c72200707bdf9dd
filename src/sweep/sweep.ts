import { withoutSuppressed, type Suppressions } from '../security/suppression.ts';
import type { DataverseClient, DataverseEntity, DataverseRecord } from '../connectors/dynamics/dataverse.client.ts';
import { ConnectorError } from '../connectors/errors.ts';
import type { MarketoClient } from '../connectors/marketo/marketo.client.ts';
import type { MarketoActivity } from '../connectors/marketo/marketo.schemas.ts';
import type { Database } from '../db/database.ts';
import type { Prisma } from '../db/generated/client.ts';
import { enqueueMany, type NewChangeEvent } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import { openIntents, staleIntents } from '../sync/create-intents.ts';
import type { MappingService } from '../sync/mappings.ts';
import { mergedEvent, parseMergeIds } from '../sync/merged-records.ts';
import type { LinkedEntity } from '../sync/policy.ts';
import type { FieldBinding } from '../sync/ports.ts';
import type { OverwrittenEdit } from '../sync/overwritten.ts';
import { normalise, sameValue, type CanonicalValue } from '../sync/values.ts';
import { dynamicsScope, fullScope, readCursor, requestFullReconcile, writeCursor } from './cursors.ts';
import { discoverRelated } from './related.ts';

// One reconciliation sweep: find what changed on each side since the stored cursors, and put it
// in the inbox (origin SWEEP) for the engine, which re-reads both sides and merges. The sweep never
// writes to Marketo or Dynamics. A cursor moves only after the events it covers are in the inbox,
// so a crash re-discovers and never skips; dedupe keys make a re-discovery a no-op. The caller
// holds the sweep lease (schedule.ts), so one sweep runs at a time across replicas.

export type SweepTrigger = 'SCHEDULE' | 'OPERATOR' | 'CLI' | 'FULL' | 'TEST';
export type SweepStatus = 'SUCCEEDED' | 'STOPPED' | 'FAILED';

export type SweepMarketoClient = Pick<MarketoClient, 'getPagingToken' | 'iterateLeadChanges' | 'iterateDeletedLeads' | 'iterateActivities' | 'getDailyUsage' | 'stats'>;
export type SweepDataverseClient = Pick<DataverseClient, 'trackChanges' | 'queryModifiedSince' | 'apiUrl'>;

export interface SweeperOptions {
  db: Database;
  marketo: SweepMarketoClient;
  dataverse: SweepDataverseClient;
  mappings: MappingService;
  /** the Dataverse application user the sync writes as: rows it modified last are echoes */
  syncUserId: () => Promise<string>;
  logger: Logger;
  owner: string;
  /** Marketo's daily quota and the share of it a sweep may bring the day's usage up to */
  quota: { dailyQuota: number; share: number };
  /** the Marketo API-only user ("Modifying User" of our own writes), when known */
  /** the Marketo API user (its changes are our echoes); known once the client has a token */
  marketoApiUser?: (() => string | undefined) | undefined;
  /** wakes the inbox worker after a batch was enqueued */
  notify: () => void;
  /** links per full-reconciliation page and events per enqueue batch; default 1000 */
  pageSize?: number;
  /** the modifiedon fallback re-reads this far before its watermark (commit lag, clock skew); default 5 min */
  overlapMs?: number;
  /** how long a run waits for the engine to process its events, to count their outcomes; default 0 */
  outcomeWaitMs?: number;
  /** consecutive empty Marketo feed pages before the sweep resumes next time; default 200 */
  maxEmptyPages?: number;
  /** a Marketo paging token older than this is treated as lost (Delete Lead activities live 14 days); default 13 days */
  marketoCursorMaxAgeMs?: number;
  /** a journaled create still open after this long has lost its worker (longer than a record lease); default 2 min */
  unfinishedCreateAgeMs?: number;
  /** the erasure list: changes of erased persons are not enqueued (security/suppression.ts) */
  suppressions?: Suppressions;
}

export interface SweepCounts {
  dynamicsChanges: number;
  dynamicsDeletes: number;
  marketoChanges: number;
  marketoDeletes: number;
  /** Marketo merges (Merge Leads activities) with a linked person among their losers or winner */
  marketoMerges?: number;
  /** changes written by the sync itself, dropped before the inbox */
  echoesDropped: number;
  /** a person's Marketo edits that a sync write planned before them overwrote (overwritten.ts), handed to the inbox */
  overwrittenEdits: number;
  /** journaled creates never linked whose worker is gone, handed to the inbox to finish */
  unfinishedCreates?: number;
  /** accounts and systemusers changed: each fans out to the linked persons that show it */
  relatedChanges?: number;
  /** changes the link already holds (same Dataverse version, or values equal to the snapshot) */
  alreadySynced: number;
  /** Marketo changes of persons that are not linked (only Sync Person to Microsoft creates them in Dynamics) */
  unlinkedSkipped: number;
  eventsEnqueued: number;
  /** events whose dedupe key was already in the inbox (a webhook or an earlier sweep saw them) */
  duplicates: number;
  linksReconciled: number;
  marketoCalls: number;
  dynamicsCalls: number;
  /** outcomes of this run's events, when the run waited for them (outcomeWaitMs) */
  created?: number;
  updated?: number;
  collisions?: number;
  rejections?: number;
  failures?: number;
  pendingAfterWait?: number;
}

export interface SweepResult {
  runId: string;
  status: SweepStatus;
  counts: SweepCounts;
  notes: string[];
  error: string | null;
}

export interface SweepRequest {
  trigger: SweepTrigger;
  /** the cron tick a scheduled run serves */
  scheduledFor?: Date;
  /** reconcile every linked pair too */
  full?: boolean;
  signal?: AbortSignal;
  /** overrides SweeperOptions.outcomeWaitMs for this run (0: do not wait) */
  outcomeWaitMs?: number;
  /** told the run's id as soon as its row exists (an API answers with it before the sweep ends) */
  onStart?: (runId: string) => void;
}

const ENTITIES: readonly LinkedEntity[] = ['LEAD', 'CONTACT'];
const dvEntity = (entity: LinkedEntity): DataverseEntity => (entity === 'LEAD' ? 'lead' : 'contact');
const NEW_LEAD = 12;
const MERGE_LEADS = 32;
// Marketo answers leadchanges/deletedleads in pages of at most 300; the engine reads and writes
// persons in batches of 300 too: what a reconciled page of links costs in Marketo calls.
const MARKETO_BATCH = 300;
const TRACKING_DISABLED = '0x80044351';

/**
 * Within one run's pages of Marketo's lead changes: a person's change of a field followed by the
 * sync's own change of that field to another value is an edit the sync's write may have overwritten
 * unseen (sync/overwritten.ts decides, with the journal).
 */
function overwriteWitness() {
  const personSet = new Map<string, string | null>();
  const key = (leadId: number, name: string) => `${leadId}:${name}`;
  return {
    personChanged(leadId: number, fields: readonly { name: string; newValue?: string | null | undefined }[]): void {
      for (const f of fields) personSet.set(key(leadId, f.name), f.newValue ?? null);
    },
    syncChanged(leadId: number, fields: readonly { name: string; newValue?: string | null | undefined }[], bindings: ReadonlyMap<string, FieldBinding>): OverwrittenEdit[] {
      const found: OverwrittenEdit[] = [];
      for (const f of fields) {
        const k = key(leadId, f.name);
        const binding = bindings.get(f.name);
        if (!personSet.has(k) || !binding) continue;
        const value = normalise(personSet.get(k), binding.type);
        personSet.delete(k);
        const by = normalise(f.newValue ?? null, binding.type);
        if (!sameValue(value, by, binding.type)) found.push({ field: binding.field, value, by });
      }
      return found;
    },
  };
}

class QuotaStop extends Error {}
class Aborted extends Error {}

function emptyCounts(): SweepCounts {
  return {
    dynamicsChanges: 0,
    dynamicsDeletes: 0,
    marketoChanges: 0,
    marketoDeletes: 0,
    echoesDropped: 0,
    overwrittenEdits: 0,
    alreadySynced: 0,
    unlinkedSkipped: 0,
    eventsEnqueued: 0,
    duplicates: 0,
    linksReconciled: 0,
    marketoCalls: 0,
    dynamicsCalls: 0,
  };
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

function trackingUnavailable(error: unknown): 'expired' | 'disabled' | null {
  if (!(error instanceof ConnectorError) || error.system !== 'dynamics') return null;
  if (error.kind === 'delta_expired') return 'expired';
  if (error.code === TRACKING_DISABLED || /not enabled for change tracking/i.test(error.message)) return 'disabled';
  return null;
}

function attribute(activity: MarketoActivity, name: string): unknown {
  return activity.attributes?.find((a) => a.name === name)?.value;
}

export function createSweeper(options: SweeperOptions) {
  const { db, marketo, dataverse, mappings, logger } = options;
  const prisma = db.prisma;
  const pageSize = options.pageSize ?? 1000;
  const overlapMs = options.overlapMs ?? 5 * 60_000;
  const maxEmptyPages = options.maxEmptyPages ?? 200;
  const marketoCursorMaxAgeMs = options.marketoCursorMaxAgeMs ?? 13 * 86_400_000;
  const unfinishedCreateAgeMs = options.unfinishedCreateAgeMs ?? 2 * 60_000;

  async function run(request: SweepRequest): Promise<SweepResult> {
    const started = await prisma.syncRun.create({ data: { trigger: request.trigger, owner: options.owner, scheduledFor: request.scheduledFor ?? null } });
    const runId = started.id;
    request.onStart?.(runId);
    // The caller holds the lease: a RUNNING row of someone else is a sweep whose replica died.
    await prisma.syncRun.updateMany({
      where: { status: 'RUNNING', id: { not: runId } },
      data: { status: 'FAILED', finishedAt: new Date(), error: 'abandoned: its replica stopped before the sweep finished' },
    });
    const counts = emptyCounts();
    const notes: string[] = [];
    const log = logger.child({ runId, trigger: request.trigger });

    const checkAbort = () => {
      if (request.signal?.aborted) throw new Aborted('the service is shutting down');
    };

    // ---- quota guard ------------------------------------------------------------------------
    const limit = Math.floor(options.quota.dailyQuota * options.quota.share);
    let usageBase: { instance: number; client: number } | undefined;
    async function marketoUsed(): Promise<number> {
      const client = marketo.stats().dailyCalls;
      if (!usageBase) {
        let instance = client;
        try {
          counts.marketoCalls++;
          const usage = await marketo.getDailyUsage();
          instance = Math.max(client, ...usage.map((u) => u.total));
        } catch (error) {
          notes.push(`Marketo usage unavailable (${describe(error)}); the quota guard counts this replica's calls only`);
        }
        usageBase = { instance, client: marketo.stats().dailyCalls };
      }
      // other integrations' calls since the check are unknown: this replica's are counted
      return usageBase.instance + (marketo.stats().dailyCalls - usageBase.client);
    }
    /** stops the sweep before `calls` more would take the day's Marketo usage past the share */
    async function spendMarketo(calls: number, what: string): Promise<void> {
      const used = await marketoUsed();
      if (used + calls > limit) {
        throw new QuotaStop(
          `quota guard: Marketo usage today is ${used} of ${options.quota.dailyQuota} calls; ${what} would pass the sweep's share of ${Math.round(options.quota.share * 100)}% (${limit}); webhooks keep the rest`,
        );
      }
    }

    // ---- inbox --------------------------------------------------------------------------------
    async function enqueueAll(found: NewChangeEvent[]): Promise<void> {
      // an erased person's change leaves no row (the engine checks their emails too, once read)
      const events = options.suppressions ? await withoutSuppressed(options.suppressions, found) : found;
      for (let i = 0; i < events.length; i += pageSize) {
        const { queued, duplicates } = await enqueueMany(prisma, events.slice(i, i + pageSize));
        counts.eventsEnqueued += queued;
        counts.duplicates += duplicates;
      }
      if (events.length > 0) options.notify();
    }

    // ---- Dynamics -----------------------------------------------------------------------------
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
      let latest: Date | null = null;
      const ids = [...rows.map((r) => r.id.toLowerCase()), ...deletedIds.map((id) => id.toLowerCase())];
      const links = ids.length
        ? await prisma.syncLink.findMany({ where: { dynamicsId: { in: ids } }, select: { dynamicsId: true, dynamicsVersion: true, status: true } })
        : [];
      const byId = new Map(links.map((l) => [l.dynamicsId, l]));
      // a row the sync created and never linked (a crash after the create) is not an echo to drop
      const echoIds = user ? rows.filter((r) => r.modifiedby?.toLowerCase() === user).map((r) => r.id) : [];
      const unfinished = new Set((await openIntents(prisma, { dynamicsIds: echoIds })).map((i) => i.dynamicsId));
      const events: NewChangeEvent[] = [];
      for (const row of rows) {
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
        const link = byId.get(id);
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
      for (const raw of deletedIds) {
        const id = raw.toLowerCase();
        const link = byId.get(id);
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

    async function discoverDynamics(entity: LinkedEntity): Promise<void> {
      const scope = dynamicsScope(entity);
      const label = dvEntity(entity);
      const cursor = await readCursor(prisma, 'DYNAMICS', scope);
      const startedAt = new Date();

      if (cursor?.token && !cursor.token.startsWith(dataverse.apiUrl)) {
        // the delta link belongs to another environment (DYNAMICS_URL changed): a lost cursor
        notes.push(`${label}: the stored delta link is for another Dynamics environment; change tracking re-initialised and every linked ${label} reconciled`);
        cursor.token = null;
        await requestFullReconcile(prisma, entity);
      }
      if (cursor?.token) {
        const seen = new Set<string>();
        let latest = cursor.watermark;
        try {
          for await (const page of dataverse.trackChanges(label, ['emailaddress1'], cursor.token)) {
            counts.dynamicsCalls++;
            checkAbort();
            const pageLatest = await enqueueDynamicsPage(entity, page.upserts, page.deletedIds, seen);
            if (pageLatest && (!latest || pageLatest > latest)) latest = pageLatest;
            // the delta link comes with the last page: stored after everything it covers is enqueued
            if (page.deltaLink) await writeCursor(prisma, 'DYNAMICS', scope, { token: page.deltaLink, watermark: latest ?? startedAt });
          }
          return;
        } catch (error) {
          const reason = trackingUnavailable(error);
          if (!reason) throw error;
          notes.push(
            reason === 'expired'
              ? `${label}: the change-tracking token expired; fell back to modifiedon ge (watermark - ${overlapMs / 1000} s), re-initialised change tracking, and reconciles every linked ${label} (deletes in the gap are not in modifiedon)`
              : `${label}: change tracking is disabled on the table; fell back to modifiedon ge (watermark - ${overlapMs / 1000} s) (deletes are seen by webhooks and full reconciliations only)`,
          );
          await requestFullReconcile(prisma, entity);
        }
      }

      // No delta link (first run, token lost, or tracking off): try to start change tracking, then
      // catch up with modifiedon from the watermark (rows changed during the initial read included).
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

    // ---- Marketo ------------------------------------------------------------------------------
    async function marketoBindings(): Promise<Map<string, FieldBinding & { entity: LinkedEntity }>[]> {
      return Promise.all(
        ENTITIES.map(async (entity) => new Map((await mappings.forEntity(entity)).bindings.map((b) => [b.marketoField, { ...b, entity }]))),
      );
    }

    async function marketoCursor(scope: string): Promise<{ token: string; fresh: boolean }> {
      const cursor = await readCursor(prisma, 'MARKETO', scope);
      if (cursor?.token && Date.now() - cursor.updatedAt.getTime() < marketoCursorMaxAgeMs) return { token: cursor.token, fresh: false };
      await spendMarketo(1, 'a paging token');
      counts.marketoCalls++;
      const token = await marketo.getPagingToken(new Date(Date.now() - overlapMs));
      notes.push(
        cursor
          ? `Marketo ${scope}: the paging token was older than the feed's retention; started again from now and reconciles every link`
          : `Marketo ${scope}: first sweep; paging token initialised`,
      );
      // stored now: the feed from this token on is what the next pages cover
      await writeCursor(prisma, 'MARKETO', scope, { token, watermark: new Date() });
      return { token, fresh: true };
    }

    async function discoverMarketoChanges(): Promise<void> {
      const [lead, contact] = await marketoBindings();
      const fields = [...new Set([...lead!.keys(), ...contact!.keys()])];
      if (fields.length === 0) return;
      const { token, fresh } = await marketoCursor('leadchanges');
      const witness = overwriteWitness();
      if (fresh) for (const entity of ENTITIES) await requestFullReconcile(prisma, entity);
      await spendMarketo(1, 'the next page of lead changes');
      for await (const page of marketo.iterateLeadChanges({ nextPageToken: token, fields, maxEmptyPages })) {
        counts.marketoCalls++;
        const leadIds = [...new Set(page.items.map((a) => a.leadId))];
        const links = leadIds.length
          ? await prisma.syncLink.findMany({
              where: { marketoId: { in: leadIds } },
              select: { marketoId: true, dynamicsEntity: true, dynamicsId: true, snapshot: true, status: true },
            })
          : [];
        const byPerson = new Map(links.map((l) => [l.marketoId, l]));
        const changed = new Map<number, { guid: string; fields: Set<string>; overwritten: OverwrittenEdit[] }>();
        const changeOf = (leadId: number, guid: string) => {
          const entry = changed.get(leadId) ?? { guid, fields: new Set<string>(), overwritten: [] };
          entry.guid = guid;
          changed.set(leadId, entry);
          return entry;
        };
        for (const activity of page.items) {
          const link = byPerson.get(activity.leadId);
          if (!link) {
            counts.unlinkedSkipped++;
            continue;
          }
          if (activity.activityTypeId === NEW_LEAD) continue;
          const bindings = link.dynamicsEntity === 'LEAD' ? lead! : contact!;
          const apiUser = options.marketoApiUser?.();
          if (apiUser && attribute(activity, 'Modifying User') === apiUser) {
            const overwritten = witness.syncChanged(activity.leadId, activity.fields ?? [], bindings);
            if (overwritten.length === 0) {
              counts.echoesDropped++;
              continue;
            }
            counts.overwrittenEdits += overwritten.length;
            const entry = changeOf(activity.leadId, activity.marketoGUID);
            entry.overwritten.push(...overwritten);
            for (const f of activity.fields ?? []) entry.fields.add(f.name);
            continue;
          }
          witness.personChanged(activity.leadId, activity.fields ?? []);
          // a value equal to the link's snapshot is one the sync wrote or agreed on already
          const snapshot = (link.snapshot ?? {}) as Record<string, CanonicalValue>;
          const relevant = (activity.fields ?? []).filter((f) => {
            const binding = bindings.get(f.name);
            return binding && !(binding.field in snapshot && sameValue(f.newValue ?? null, snapshot[binding.field], binding.type));
          });
          if (relevant.length === 0) {
            counts.alreadySynced++;
            continue;
          }
          const entry = changeOf(activity.leadId, activity.marketoGUID);
          for (const f of relevant) entry.fields.add(f.name);
        }
        const events: NewChangeEvent[] = [...changed].map(([marketoId, entry]) => {
          const link = byPerson.get(marketoId)!;
          return {
            source: 'MARKETO',
            origin: 'SWEEP',
            operation: 'UPDATE',
            marketoId,
            dynamicsEntity: link.dynamicsEntity,
            dynamicsId: link.dynamicsId,
            payload: { runId, fields: [...entry.fields], ...(entry.overwritten.length ? { overwritten: entry.overwritten } : {}) },
            dedupeKey: `sweep:mk:${marketoId}:${entry.guid}`,
          };
        });
        counts.marketoChanges += events.length;
        await enqueueAll(events);
        await writeCursor(prisma, 'MARKETO', 'leadchanges', { token: page.nextPageToken, watermark: new Date() });
        checkAbort();
        if (page.moreResult) await spendMarketo(1, 'the next page of lead changes');
      }
    }

    /** persons merged away this run: a Delete Lead activity of theirs is the merge's, not a delete */
    const mergedAway = new Set<number>();

    /**
     * Merge Leads activities (type 32; the activities feed, logged on the winner, "Merge IDs" the
     * losers): each merge that concerns a linked person becomes a MERGED event, which moves the
     * loser's link to the winner (sync/merged-records.ts).
     */
    async function discoverMarketoMerges(): Promise<void> {
      const { token } = await marketoCursor('mergeleads');
      await spendMarketo(1, 'the next page of merges');
      for await (const page of marketo.iterateActivities({ nextPageToken: token, activityTypeIds: [MERGE_LEADS], maxEmptyPages })) {
        counts.marketoCalls++;
        const merges = page.items
          .filter((a) => a.activityTypeId === MERGE_LEADS)
          .map((a) => ({ guid: a.marketoGUID, winnerId: a.leadId, loserIds: parseMergeIds(attribute(a, 'Merge IDs')).filter((id) => id !== a.leadId) }))
          .filter((m) => m.loserIds.length > 0);
        for (const m of merges) m.loserIds.forEach((id) => mergedAway.add(id));
        const ids = [...new Set(merges.flatMap((m) => [m.winnerId, ...m.loserIds]))];
        const linked = new Set(
          ids.length ? (await prisma.syncLink.findMany({ where: { marketoId: { in: ids } }, select: { marketoId: true } })).map((l) => l.marketoId) : [],
        );
        const events = merges
          .filter((m) => linked.has(m.winnerId) || m.loserIds.some((id) => linked.has(id)))
          .map((m) => mergedEvent({ side: 'MARKETO', winnerId: m.winnerId, loserIds: m.loserIds }, { origin: 'SWEEP', dedupeKey: `sweep:mk:merge:${m.guid}`, payload: { runId } }));
        counts.marketoMerges = (counts.marketoMerges ?? 0) + events.length;
        await enqueueAll(events);
        await writeCursor(prisma, 'MARKETO', 'mergeleads', { token: page.nextPageToken, watermark: new Date() });
        checkAbort();
        if (page.moreResult) await spendMarketo(1, 'the next page of merges');
      }
    }

    async function discoverMarketoDeletes(): Promise<void> {
      const { token } = await marketoCursor('deletedleads');
      await spendMarketo(1, 'the next page of deleted leads');
      for await (const page of marketo.iterateDeletedLeads({ nextPageToken: token, maxEmptyPages })) {
        counts.marketoCalls++;
        const seen = new Map(page.items.filter((a) => !mergedAway.has(a.leadId)).map((a) => [a.leadId, a.marketoGUID]));
        const links = seen.size
          ? await prisma.syncLink.findMany({
              where: { marketoId: { in: [...seen.keys()] }, status: { not: 'DELETED_IN_MARKETO' } },
              select: { marketoId: true, dynamicsEntity: true, dynamicsId: true },
            })
          : [];
        const events: NewChangeEvent[] = links.map((link) => ({
          source: 'MARKETO',
          origin: 'SWEEP',
          operation: 'DELETE',
          marketoId: link.marketoId,
          dynamicsEntity: link.dynamicsEntity,
          dynamicsId: link.dynamicsId,
          payload: { runId },
          dedupeKey: `sweep:mk:del:${seen.get(link.marketoId)}`,
        }));
        counts.marketoDeletes += events.length;
        await enqueueAll(events);
        await writeCursor(prisma, 'MARKETO', 'deletedleads', { token: page.nextPageToken, watermark: new Date() });
        checkAbort();
        if (page.moreResult) await spendMarketo(1, 'the next page of deleted leads');
      }
    }

    // ---- full reconciliation ------------------------------------------------------------------
    async function requestBackfills(): Promise<void> {
      const rows = await prisma.fieldMapping.findMany({
        where: { backfillRequestedAt: { not: null } },
        select: { entity: true, canonicalField: true },
      });
      for (const entity of new Set(rows.map((r) => r.entity))) {
        mappings.invalidate(entity);
        await requestFullReconcile(prisma, entity);
        const fields = rows.filter((r) => r.entity === entity).map((r) => r.canonicalField);
        notes.push(`${dvEntity(entity)}: back-fill of ${fields.join(', ')} requested: every linked ${dvEntity(entity)} is reconciled`);
      }
    }

    async function reconcile(entity: LinkedEntity): Promise<void> {
      const scope = fullScope(entity);
      const cursor = await readCursor(prisma, 'DYNAMICS', scope);
      if (!cursor?.token) return;
      let after = cursor.token;
      const requestedAt = cursor.watermark;
      const page = pageSize * 5;
      for (;;) {
        checkAbort();
        // the engine reads these persons (and may write them) in batches of 300
        await spendMarketo(2 * Math.ceil(page / MARKETO_BATCH), `reconciling up to ${page} more linked ${dvEntity(entity)}s`);
        // Keyset pagination inside the database: a page of links becomes a page of inbox events
        // in one statement, so memory does not grow with the table and no row crosses the wire.
        // A link made after the reconciliation was requested was synced from fresh reads of both
        // sides when it was made (the initial sync links a whole org during its first sweep): it
        // is passed over, not re-read.
        const [result] = await prisma.$queryRaw<{ links: number; enqueued: number; fresh: number; last: string | null }[]>`
          WITH page AS (
            SELECT id, "marketoId", "dynamicsId", "createdAt" FROM sync_link
             WHERE "dynamicsEntity" = ${entity}::"DynamicsEntity" AND id > ${after}::uuid AND status <> 'DELETED_IN_DYNAMICS'
             ORDER BY id
             LIMIT ${page}
          ), queued AS (
            INSERT INTO change_event (id, source, origin, operation, "marketoId", "dynamicsEntity", "dynamicsId", payload,
                                      "dedupeKey", "receivedAt", "nextAttemptAt", "updatedAt")
            SELECT gen_random_uuid(), 'OPERATOR', 'SWEEP', 'RESYNC', "marketoId", ${entity}::"DynamicsEntity", "dynamicsId",
                   jsonb_build_object('runId', ${runId}::text, 'reconcile', true),
                   'sweep:full:' || ${runId}::text || ':' || id::text, clock_timestamp(), clock_timestamp(), now()
              FROM page
             WHERE ${requestedAt}::timestamptz IS NULL OR "createdAt" <= ${requestedAt}::timestamptz
            ON CONFLICT ("dedupeKey") DO NOTHING
            RETURNING 1
          )
          SELECT (SELECT count(*) FROM page)::int AS links, (SELECT count(*) FROM queued)::int AS enqueued,
                 (SELECT count(*) FROM page WHERE "createdAt" > ${requestedAt}::timestamptz)::int AS fresh,
                 (SELECT id::text FROM page ORDER BY id DESC LIMIT 1) AS last`;
        const links = result?.links ?? 0;
        if (links === 0) break;
        counts.eventsEnqueued += result?.enqueued ?? 0;
        counts.duplicates += links - (result?.enqueued ?? 0) - (result?.fresh ?? 0);
        counts.linksReconciled += links - (result?.fresh ?? 0);
        options.notify();
        after = result!.last!;
        await writeCursor(prisma, 'DYNAMICS', scope, { token: after });
        if (links < page) break;
      }
      await writeCursor(prisma, 'DYNAMICS', scope, { token: null });
      // back-fills requested before this reconciliation began are done; later ones start another
      if (cursor.watermark) {
        await prisma.fieldMapping.updateMany({
          where: { entity, backfillRequestedAt: { not: null, lte: cursor.watermark } },
          data: { backfillRequestedAt: null },
        });
      }
      const again = await prisma.fieldMapping.count({ where: { entity, backfillRequestedAt: { not: null } } });
      if (again > 0) await requestFullReconcile(prisma, entity);
    }

    // ---- creates nobody finished ---------------------------------------------------------------
    /**
     * A create journaled and never linked whose worker is gone (create-intents.ts): the record it
     * was for may never change again, so the sweep hands it to the inbox, whose holder finishes it.
     */
    async function discoverUnfinishedCreates(): Promise<void> {
      const intents = await staleIntents(prisma, new Date(Date.now() - unfinishedCreateAgeMs), pageSize);
      const events = intents.map((intent): NewChangeEvent => {
        const common = { origin: 'SWEEP' as const, dynamicsEntity: intent.entity, dedupeKey: `sweep:create:${intent.id}:${runId}` };
        return intent.direction === 'TO_DYNAMICS'
          ? { ...common, source: 'MARKETO', operation: 'SYNC_PERSON', marketoId: intent.marketoId ?? undefined, payload: { runId, syncAs: intent.entity === 'CONTACT' ? 'contact' : 'lead', ...(intent.assignTo ? { assignTo: intent.assignTo } : {}) } }
          : { ...common, source: 'DYNAMICS', operation: 'UPDATE', dynamicsId: intent.dynamicsId, payload: { runId } };
      });
      if (events.length > 0) counts.unfinishedCreates = events.length;
      await enqueueAll(events);
    }

    // ---- the run ------------------------------------------------------------------------------
    let status: SweepStatus = 'SUCCEEDED';
    let error: string | null = null;
    try {
      if (request.full) for (const entity of ENTITIES) await requestFullReconcile(prisma, entity);
      await requestBackfills();
      // merges first: a change of a merged-away person's record, queued before its merge, would find
      // the person gone and bring it back (a new person) instead of following the moved link
      await discoverMarketoMerges();
      for (const entity of ENTITIES) await discoverDynamics(entity);
      for (const kind of ['account', 'owner'] as const) {
        const { changed } = await discoverRelated(
          { prisma, dataverse, runId, overlapMs, enqueue: enqueueAll, called: () => void counts.dynamicsCalls++, note: (text) => notes.push(text), checkAbort },
          kind,
        );
        if (changed > 0) counts.relatedChanges = (counts.relatedChanges ?? 0) + changed;
      }
      await discoverMarketoChanges();
      await discoverMarketoDeletes();
      await discoverUnfinishedCreates();
      for (const entity of ENTITIES) await reconcile(entity);
    } catch (caught) {
      if (caught instanceof QuotaStop || caught instanceof Aborted) {
        status = 'STOPPED';
        error = caught.message;
        notes.push(`stopped early: ${caught.message}`);
      } else {
        status = 'FAILED';
        error = describe(caught);
        log.error({ err: caught }, 'sweep failed');
      }
    }

    const waitMs = request.outcomeWaitMs ?? options.outcomeWaitMs ?? 0;
    if (waitMs > 0 && counts.eventsEnqueued > 0) await countOutcomes(runId, started.startedAt, counts, waitMs, request.signal);
    await prisma.syncRun.update({
      where: { id: runId },
      data: { status, finishedAt: new Date(), counts: counts as unknown as Prisma.InputJsonValue, notes, error },
    });
    log.info({ status, ...counts, notes }, 'sweep finished');
    return { runId, status, counts, notes, error };
  }

  /** Waits (bounded) for the engine to process this run's events and counts what they did. */
  async function countOutcomes(runId: string, since: Date, counts: SweepCounts, waitMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + waitMs;
    let pending = 0;
    for (;;) {
      const [row] = await prisma.$queryRaw<{ pending: number }[]>`
        SELECT count(*)::int AS pending FROM change_event
         WHERE "receivedAt" >= ${since} AND origin = 'SWEEP' AND payload->>'runId' = ${runId}
           AND status IN ('PENDING', 'PROCESSING', 'FAILED')`;
      pending = row?.pending ?? 0;
      if (pending === 0 || Date.now() >= deadline || signal?.aborted) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const rows = await prisma.$queryRaw<{ type: string; count: number }[]>`
      SELECT a.type::text AS type, count(*)::int AS count
        FROM activity a JOIN change_event e ON e.id = a."changeEventId"
       WHERE e."receivedAt" >= ${since} AND e.origin = 'SWEEP' AND e.payload->>'runId' = ${runId}
       GROUP BY a.type`;
    const of = (...types: string[]) => rows.filter((r) => types.includes(r.type)).reduce((sum, r) => sum + r.count, 0);
    counts.created = of('CREATED_IN_MARKETO', 'CREATED_IN_DYNAMICS');
    counts.updated = of('UPDATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS');
    counts.collisions = of('COLLISION_RESOLVED');
    counts.rejections = of('VALIDATION_REJECTED');
    counts.failures = of('SYNC_FAILED', 'EVENT_DEAD');
    counts.pendingAfterWait = pending;
  }

  return { run };
}

export type Sweeper = ReturnType<typeof createSweeper>;
