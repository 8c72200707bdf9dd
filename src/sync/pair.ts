import { ConnectorError } from '../connectors/errors.ts';
import type { Database } from '../db/database.ts';
import type { ActivityEntry, ActivitySubject } from './activities.ts';
import type { SyncIO } from './io.ts';
import { settle } from './journal.ts';
import { findLink, type Link, type SyncCommit } from './links.ts';
import type { EntityMapping, MappingService } from './mappings.ts';
import { planSync, rewrittenFields, settlePending, withRefusals, type LinkState, type MergePlan, type PendingEntry } from './plan.ts';
import type { DynamicsRecordView, PersonRecord } from './ports.ts';
import type { ProtocolStore } from './protocol.ts';

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
}

/** What the batch already read for the pair: reads made after its leases were taken. */
export interface PairReads {
  person: PersonRecord | null | undefined;
  record: DynamicsRecordView | null | undefined;
  pending: readonly PendingEntry[];
}

/** What one attempt has journaled and learned so far, carried to its commit. */
interface Attempt {
  entries: ActivityEntry[];
  final: string[];
  superseded: string[];
}

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
      journal: { final: attempt.final, superseded: attempt.superseded },
    };
  }

  /** Applies a merge plan's writes; returns the plan as it turned out and the stored record. */
  async function apply(link: Link, mapping: EntityMapping, plan: MergePlan, person: PersonRecord, record: DynamicsRecordView, subject: ActivitySubject) {
    let applied = plan;
    let stored = record;
    if (Object.keys(plan.writes.DYNAMICS).length > 0) {
      const written = await io.writeDynamics(link.entity, link.dynamicsId, mapping, record, plan.writes.DYNAMICS);
      stored = written.record;
      applied = withRefusals(applied, link, 'DYNAMICS', written.rejected, subject);
    }
    let personAfter = person;
    if (Object.keys(applied.writes.MARKETO).length > 0) {
      const result = await io.writePerson(link.entity, link.marketoId, applied.writes.MARKETO);
      if (result.status === 'skipped') {
        const message = result.reasons.map((r) => `${r.code} ${r.message}`).join('; ') || 'skipped';
        applied = withRefusals(applied, link, 'MARKETO', new Map(Object.keys(applied.writes.MARKETO).map((f) => [f, message])), subject);
      } else {
        personAfter = { ...person, fields: { ...person.fields, ...applied.writes.MARKETO } };
      }
    }
    return { applied, stored, person: personAfter };
  }

  /** Syncs one linked pair whose leases are held. */
  async function syncPair(start: Link, reads: PairReads, subject: ActivitySubject, fromDynamics: boolean): Promise<PairOutcome> {
    let link = start;
    let person = reads.person !== undefined ? reads.person : await io.readPerson(link.entity, link.marketoId);
    let record = reads.record !== undefined ? reads.record : await io.readRecord(link.entity, link.dynamicsId);
    const mapping = await mappings.forEntity(link.entity);
    if (reads.pending.length > 0) {
      await settle(db, settlePending(reads.pending, { MARKETO: person?.fields ?? null, DYNAMICS: record?.fields ?? null }, mapping.rules));
    }
    let attempt: Attempt = { entries: [], final: [], superseded: [] };

    for (let replans = 0; ; replans++) {
      if (replans > maxReplans) throw new ReplanLimitError(`person ${link.marketoId} changed under the sync ${replans} times in a row; retried later`);
      const plan = planSync({
        link,
        person,
        record,
        rules: mapping.rules,
        deletedFlagField: options.deletedFlagField,
        dynamicsChangedSinceSync: record !== null && person === null ? await dynamicsChangedSinceSync(link, record, fromDynamics) : false,
        subject,
        now: now().toISOString(),
      });
      if (plan.kind === 'none') return { status: 'done', linkId: link.id, note: plan.note };
      if (plan.kind === 'recreate_person') return { status: 'recreate_person', link, record: record! };

      let next: LinkState;
      if (plan.kind === 'status') {
        let entries = plan.activities;
        if (plan.flagPerson) {
          const { field } = plan.flagPerson;
          const flagged = await io.setPersonField(plan.flagPerson.id, field, true);
          const said = flagged.status === 'skipped' ? ` (could not set ${field}: ${flagged.reasons.map((r) => r.message).join('; ')})` : `; ${field} = true`;
          entries = entries.map((e) => ({ ...e, message: `${e.message ?? ''}${said}` }));
        }
        attempt.entries.push(...entries);
        next = { ...stateOf(link), status: plan.status };
      } else {
        const journaled = await protocol.journal(plan.activities);
        let outcome;
        try {
          outcome = await apply(link, mapping, plan, person!, record!, subject);
        } catch (error) {
          if (!(error instanceof ConnectorError && error.kind === 'conflict')) throw error;
          // 412: someone changed the record since it was read; nothing was written. Read again, plan again.
          attempt.superseded.push(...journaled);
          record = await io.readRecord(link.entity, link.dynamicsId);
          continue;
        }
        // Entries journaled as planned are final; if the writes turned out otherwise (a refusal),
        // the entries describing what happened replace them.
        if (outcome.applied === plan) attempt.final.push(...journaled);
        else {
          attempt.superseded.push(...journaled);
          attempt.entries.push(...outcome.applied.activities);
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
      // attempt wrote happened, so its journal is final; plan again from fresh reads.
      await settle(db, { final: attempt.final, superseded: attempt.superseded });
      attempt = { entries: [], final: [], superseded: [] };
      const fresh = await findLink(db.prisma, { marketoId: link.marketoId });
      if (!fresh || fresh.id !== start.id || fresh.dynamicsId !== start.dynamicsId) return { status: 'done', linkId: fresh?.id ?? null, note: 'the link was re-pointed meanwhile' };
      link = fresh;
      [person, record] = await Promise.all([io.readPerson(link.entity, link.marketoId), io.readRecord(link.entity, link.dynamicsId)]);
    }
  }

  return { syncPair };
}

export type PairSync = ReturnType<typeof createPairSync>;
