import { ConnectorError } from '../connectors/errors.ts';
import { FencedOutError } from './fence.ts';
import type { Database } from '../db/database.ts';
import type { ActivityEntry, ActivitySubject } from './activities.ts';
import type { SyncIO } from './io.ts';
import { lastMarketoWrites, pendingEntries, settle, type JournalEntry } from './journal.ts';
import { findLink, type Link, type SyncCommit } from './links.ts';
import type { EntityMapping, MappingService } from './mappings.ts';
import { planSync, rewrittenFields, settlePending, withRefusals, type LinkState, type MergePlan, type PendingEntry, type SyncPlan } from './plan.ts';
import type { DynamicsRecordView, PersonRecord, WriteFence } from './ports.ts';
import { recoverOverwritten, type MarketoWriteRecord, type OverwrittenEdit } from './overwritten.ts';
import type { ProtocolStore } from './protocol.ts';
import {
  findStaleWrites,
  MARKETO_CLOCK_SKEW_MS,
  unwitnessedDynamicsWrites,
  unwitnessedMarketoWrites,
  witnessedDynamicsWrites,
  witnessedMarketoWrites,
  WRITE_ENTRY_TYPES,
  type DynamicsEcho,
  type StaleWrites,
} from './stale.ts';

// The executor of the write protocol for one linked pair (DESIGN "The write protocol"): settle
// what an earlier attempt left pending, plan (pure, plan.ts), journal the plan's entries, apply
// the writes (Dynamics first, with If-Match; a refusal narrows the plan; a value a plug-in
// rewrote is planned again as a one-sided change), and commit the snapshot only if the link is
// still at the revision the plan was made from. A refused commit or a 412 plans again from fresh
// reads. Every decision is plan.ts's; this file only does what a plan says and reports back.

export type PairOutcome =
  | { status: 'done'; linkId: string | null; note?: string }
  /** the person was deleted in Marketo and the record changed since: the caller re-creates it */
  | { status: 'recreate_person'; link: Link; record: DynamicsRecordView };

export interface PairSyncOptions {
  db: Database;
  io: SyncIO;
  protocol: ProtocolStore;
  mappings: MappingService;
  deletedFlagField: string | null;
  syncUserId: () => Promise<string>;
  /** re-plans allowed after a 412, a rewrite or a refused commit, before the event is retried */
  maxReplans?: number;
  now?: () => Date;
  /** queues a sync of the link for whoever holds its records next */
  requestResync?: (link: Link, why: string) => Promise<void>;
}

/** What the pair's work holds: its fence on every vendor write (sync/fence.ts). */
export interface PairWork {
  subject: ActivitySubject;
  /** a change made in Dynamics brought this sync (a missing person is then re-created if the record changed) */
  fromDynamics: boolean;
  fence?: WriteFence | undefined;
  /** Marketo edits the sweep found overwritten by a sync write (overwritten.ts) */
  overwritten?: readonly OverwrittenEdit[];
}

/** What the batch already read for the pair: reads made after its leases were taken. */
export interface PairReads {
  person: PersonRecord | null | undefined;
  record: DynamicsRecordView | null | undefined;
  /** the link's journal: entries still pending and write entries still in doubt (journal.ts) */
  pending: readonly PendingEntry[];
}

/** What one attempt has journaled and learned so far, carried to its commit. */
interface Attempt {
  entries: ActivityEntry[];
  final: string[];
  superseded: string[];
  /** earlier attempts' entries this one found no longer in doubt (stale.ts) */
  retire: string[];
}

const newAttempt = (): Attempt => ({ entries: [], final: [], superseded: [], retire: [] });

export class ReplanLimitError extends Error {}

export function createPairSync(options: PairSyncOptions) {
  const { db, io, protocol, mappings } = options;
  const maxReplans = options.maxReplans ?? 4;
  const now = options.now ?? (() => new Date());

  async function dynamicsChangedSinceSync(link: Link, record: DynamicsRecordView, fromDynamics: boolean): Promise<boolean> {
    if (!fromDynamics) return false;
    if (record.modifiedBy === (await options.syncUserId())) return false;
    return link.lastSyncedAt === null || Date.parse(record.modifiedOn) > link.lastSyncedAt.getTime();
  }

  const stateOf = (link: Link): LinkState => ({ status: link.status, snapshot: link.snapshot, fieldOrigins: link.fieldOrigins, blocked: link.blocked });

  function commitOf(link: Link, state: LinkState, record: DynamicsRecordView | null, person: PersonRecord | null, attempt: Attempt): SyncCommit {
    return {
      linkId: link.id,
      revision: link.revision,
      state: {
        ...state,
        dynamicsEtag: record?.etag ?? link.dynamicsEtag,
        dynamicsVersion: record?.version ?? null,
        marketoVersion: person?.updatedAt ?? null,
      },
      entries: attempt.entries,
      journal: { final: attempt.final, superseded: attempt.superseded, retire: attempt.retire },
    };
  }

  /**
   * Settles what earlier attempts left PENDING by what the sides hold (a write seen on its side has
   * landed: final, and no longer in doubt unless planned from an older revision); returns the write
   * entries still in doubt, and the base
   * the link had reached: a write of an attempt planned from the link's current revision that is
   * seen landed made both sides hold its value then, as its commit would have recorded, so a later
   * edit on either side is a one-sided change, not a collision with a base from before it.
   */
  async function settleEarlier(link: Link, journal: readonly PendingEntry[], person: PersonRecord | null, record: DynamicsRecordView | null, mapping: EntityMapping) {
    const pending = journal.filter((e) => e.pending);
    const seen = settlePending(pending, { MARKETO: person?.fields ?? null, DYNAMICS: record?.fields ?? null }, mapping.rules);
    const seenFinal = new Set(seen.final);
    const witnessed = new Set([
      ...(person ? await witnessedInMarketo(link, unwitnessedMarketoWrites(pending, seenFinal), mapping) : []),
      ...(await witnessedInDynamics(link, unwitnessedDynamicsWrites(pending, seenFinal), mapping)),
    ]);
    const settled = { final: [...seen.final, ...witnessed], superseded: seen.superseded.filter((id) => !witnessed.has(id)) };
    // A write planned from an older revision that is seen landed may be a late write over newer
    // values: final (it happened), but still in doubt for stale.ts, which undoes or retires it.
    const plannedNow = new Set(pending.filter((e) => e.plannedRevision === null || e.plannedRevision === link.revision).map((e) => e.id));
    const landed = new Set(settled.final.filter((id) => plannedNow.has(id)));
    if (pending.length > 0) await settle(db, { ...settled, retire: [...landed] });
    const snapshot = { ...link.snapshot };
    for (const entry of pending) {
      if (!landed.has(entry.id) || entry.plannedRevision !== link.revision || (entry.type !== 'UPDATED_IN_MARKETO' && entry.type !== 'UPDATED_IN_DYNAMICS')) continue;
      for (const f of entry.fields) snapshot[f.field] = f.newValue;
    }
    return { inDoubt: journal.filter((e) => e.plannedRevision !== null && !landed.has(e.id)), link: { ...link, snapshot }, landed: landed.size };
  }

  /** The writes among `candidates` that Marketo's activity log shows landed (stale.ts); one look-up for all. */
  async function witnessedInMarketo(link: Link, candidates: readonly PendingEntry[], mapping: EntityMapping): Promise<string[]> {
    if (candidates.length === 0) return [];
    const since = new Date(Math.min(...candidates.map((e) => e.at)) - MARKETO_CLOCK_SKEW_MS);
    const changes = await io.personFieldChangesSince(link.entity, link.marketoId, since);
    return witnessedMarketoWrites(candidates, changes, mapping.rules);
  }

  /** The writes among `candidates` that an echo of the sync user's own Update shows landed (stale.ts). */
  async function witnessedInDynamics(link: Link, candidates: readonly PendingEntry[], mapping: EntityMapping): Promise<string[]> {
    if (candidates.length === 0) return [];
    const echoes = new Map<string, DynamicsEcho[]>();
    for (const entry of candidates) {
      const read = (entry.dynamicsEchoes ?? []).map(async (echo) => ({ atMs: Date.parse(echo.at), fields: await io.dynamicsFieldsOfColumns(link.entity, echo.columns) }));
      echoes.set(entry.id, await Promise.all(read));
    }
    return witnessedDynamicsWrites(candidates, (entry) => echoes.get(entry.id) ?? [], mapping.rules);
  }

  function staleWritesOf(inDoubt: readonly PendingEntry[], link: Link, person: PersonRecord | null, record: DynamicsRecordView | null, mapping: EntityMapping): StaleWrites {
    return findStaleWrites({
      inDoubt,
      revision: link.revision,
      snapshot: link.snapshot,
      holds: { MARKETO: person?.fields ?? null, DYNAMICS: record?.fields ?? null },
      rules: mapping.rules,
      nowMs: now().getTime(),
    });
  }

  /** Applies a merge plan's writes; returns the plan as it turned out and the stored record. */
  async function apply(link: Link, mapping: EntityMapping, plan: MergePlan, person: PersonRecord, record: DynamicsRecordView, work: PairWork) {
    const { subject, fence } = work;
    let applied = plan;
    let stored = record;
    if (Object.keys(plan.writes.DYNAMICS).length > 0) {
      const written = await io.writeDynamics(link.entity, link.dynamicsId, mapping, record, plan.writes.DYNAMICS, fence);
      stored = written.record;
      applied = withRefusals(applied, link, 'DYNAMICS', written.rejected, subject);
    }
    let personAfter = person;
    if (Object.keys(applied.writes.MARKETO).length > 0) {
      const result = await io.writePerson(link.entity, link.marketoId, applied.writes.MARKETO, fence);
      if (result.status === 'skipped') {
        const message = result.reasons.map((r) => `${r.code} ${r.message}`).join('; ') || 'skipped';
        applied = withRefusals(applied, link, 'MARKETO', new Map(Object.keys(applied.writes.MARKETO).map((f) => [f, message])), subject);
      } else {
        personAfter = { ...person, fields: { ...person.fields, ...applied.writes.MARKETO } };
      }
    }
    return { applied, stored, person: personAfter };
  }

  /** A status plan's entries, after setting the person's flag when it asks for one. */
  async function statusEntries(plan: Extract<SyncPlan, { kind: 'status' }>, fence: WriteFence | undefined): Promise<ActivityEntry[]> {
    if (!plan.flagPerson) return plan.activities;
    const { field } = plan.flagPerson;
    const flagged = await io.setPersonField(plan.flagPerson.id, field, true, fence);
    const said = flagged.status === 'skipped' ? ` (could not set ${field}: ${flagged.reasons.map((r) => r.message).join('; ')})` : `; ${field} = true`;
    return plan.activities.map((e) => ({ ...e, message: `${e.message ?? ''}${said}` }));
  }

  /** Journals a merge plan's entries (write entries with the revision planned from) and applies it; null after a 412. */
  async function journalAndApply(link: Link, mapping: EntityMapping, plan: MergePlan, person: PersonRecord, record: DynamicsRecordView, work: PairWork, attempt: Attempt) {
    const entries: JournalEntry[] = plan.activities.map((a) => (WRITE_ENTRY_TYPES.has(a.type) ? { ...a, plannedRevision: link.revision } : a));
    const journaled = await protocol.journal(entries);
    try {
      const outcome = await apply(link, mapping, plan, person, record, work);
      // Entries journaled as planned are final; if the writes turned out otherwise (a refusal),
      // the entries describing what happened replace them.
      if (outcome.applied === plan) attempt.final.push(...journaled);
      else {
        attempt.superseded.push(...journaled);
        attempt.entries.push(...outcome.applied.activities);
      }
      return outcome;
    } catch (error) {
      if (!(error instanceof ConnectorError && error.kind === 'conflict')) throw error;
      // 412: the record changed since it was read. Usually nothing was written; but a $batch whose
      // answer was lost and was sent again answers 412 for its own write, which did land: the entries
      // stay PENDING, settled like an earlier attempt's by what the sides hold when read again (or
      // by the echo of the write), so a collision's loser stays on record.
      return null;
    }
  }

  /**
   * Syncs one linked pair whose leases are held. Should the work lose its lease after writes of
   * it went out but before they were committed, those writes may land over newer values: a re-sync
   * of the link is queued, so that whoever holds the record next finds them (stale.ts).
   */
  async function syncPair(start: Link, reads: PairReads, work: PairWork): Promise<PairOutcome> {
    const sent = { uncommitted: false };
    try {
      return await syncHeldPair(start, reads, work, sent);
    } catch (error) {
      if (error instanceof FencedOutError && sent.uncommitted) await options.requestResync?.(start, 'its worker lost the record lease after writing');
      throw error;
    }
  }

  async function syncHeldPair(start: Link, reads: PairReads, work: PairWork, sent: { uncommitted: boolean }): Promise<PairOutcome> {
    let link = start;
    let person = reads.person !== undefined ? reads.person : await io.readPerson(link.entity, link.marketoId);
    let record = reads.record !== undefined ? reads.record : await io.readRecord(link.entity, link.dynamicsId);
    const mapping = await mappings.forEntity(link.entity);
    const earlier = await settleEarlier(link, reads.pending, person, record, mapping);
    let inDoubt = earlier.inDoubt;
    link = earlier.link;
    let attempt = newAttempt();
    const evidence = work.overwritten ?? [];
    const lastWrites = evidence.length ? await lastMarketoWrites(db, link.id, evidence.map((e) => e.field)) : new Map<string, MarketoWriteRecord>();

    for (let replans = 0; ; replans++) {
      if (replans > maxReplans) throw new ReplanLimitError(`person ${link.marketoId} changed under the sync ${replans} times in a row; retried later`);
      const stale = staleWritesOf(inDoubt, link, person, record, mapping);
      const recovered = person && record ? recoverOverwritten({ evidence, lastWrites, marketo: person.fields, dynamics: record.fields, snapshot: link.snapshot, rules: mapping.rules }) : [];
      attempt.retire = stale.retire;
      const plan = planSync({
        link,
        person,
        record,
        rules: mapping.rules,
        deletedFlagField: options.deletedFlagField,
        dynamicsChangedSinceSync: record !== null && person === null ? await dynamicsChangedSinceSync(link, record, work.fromDynamics) : false,
        subject: work.subject,
        now: now().toISOString(),
        stale: stale.stale,
        recovered,
      });
      if (plan.kind === 'none' && stale.retire.length === 0) return { status: 'done', linkId: link.id, note: plan.note };
      if (plan.kind === 'recreate_person') return { status: 'recreate_person', link, record: record! };

      let next: LinkState = stateOf(link);
      if (plan.kind === 'status') {
        attempt.entries.push(...(await statusEntries(plan, work.fence)));
        next = { ...next, status: plan.status };
      } else if (plan.kind === 'merge') {
        const outcome = await journalAndApply(link, mapping, plan, person!, record!, work, attempt);
        sent.uncommitted ||= outcome !== null;
        if (!outcome) {
          record = await io.readRecord(link.entity, link.dynamicsId);
          // Dynamics is written first: nothing of this attempt went to Marketo, so it is not asked
          const settled = await settleEarlier(link, (await pendingEntries(db, [link.id])).get(link.id) ?? [], null, record, mapping);
          sent.uncommitted ||= settled.landed > 0;
          ({ inDoubt, link } = settled);
          continue;
        }
        person = outcome.person;
        record = outcome.stored;
        next = outcome.applied.next;
        if (rewrittenFields(outcome.applied.writes.DYNAMICS, outcome.stored.fields, mapping.rules).length > 0) {
          // A plug-in rewrote what was written: from the base just agreed, that is a change made in
          // Dynamics, carried to Marketo by the next plan like any other.
          link = { ...link, ...next };
          continue;
        }
      }

      if (await protocol.commit(commitOf(link, next, record, person, attempt))) {
        return { status: 'done', linkId: link.id };
      }
      // The link moved on (another worker committed after this one's lease ran out): what this
      // attempt wrote happened, but may have landed over newer values, so its entries stay in doubt
      // (stale.ts); plan again from fresh reads.
      await settle(db, { final: attempt.final, superseded: attempt.superseded });
      if (work.fence?.signal.aborted) throw new FencedOutError('the record lease was lost before the commit; the link is synced again by whoever holds it');
      attempt = newAttempt();
      const fresh = await findLink(db.prisma, { marketoId: link.marketoId });
      if (!fresh || fresh.id !== start.id || fresh.dynamicsId !== start.dynamicsId) return { status: 'done', linkId: fresh?.id ?? null, note: 'the link was re-pointed meanwhile' };
      link = fresh;
      [person, record] = await Promise.all([io.readPerson(link.entity, link.marketoId), io.readRecord(link.entity, link.dynamicsId)]);
      inDoubt = ((await pendingEntries(db, [link.id])).get(link.id) ?? []).filter((e) => e.plannedRevision !== null);
    }
  }

  return { syncPair };
}

export type PairSync = ReturnType<typeof createPairSync>;
