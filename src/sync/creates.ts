import type { Database } from '../db/database.ts';
import { ConnectorError } from '../connectors/errors.ts';
import { activity, recordActivities, type ActivityField, type ActivitySubject } from './activities.ts';
import { settleIntent, type CreateIntent } from './create-intents.ts';
import type { Link } from './links.ts';
import type { MappingService } from './mappings.ts';
import { baseAfterCreate } from './plan.ts';
import { entityLabel } from './policy.ts';
import type { DynamicsOwner, DynamicsPort, DynamicsRecordView, WriteFence } from './ports.ts';
import { decideRelink, relink } from './relink.ts';
import { sameValue } from './values.ts';

// Finishing Sync Person's journaled create of a Dynamics record (create-intents.ts), the first
// time or after a crash: the POST is (re)sent with the journaled primary key, so a record that
// already exists answers Dataverse's duplicate-key 412 and is read back (connectors' createRecord),
// never created twice -- with or without an email. The link starts from the values created.
// The caller holds the person's lease; the POST is fenced on it.

export type ToDynamicsResult =
  | { status: 'created'; link: Link; record: DynamicsRecordView; differs: boolean }
  | { status: 'rejected'; message: string }
  | { status: 'refused'; link: Link; message: string };

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function ownerOf(assignTo: string | null | undefined): DynamicsOwner | undefined {
  const value = assignTo?.trim();
  if (!value) return undefined;
  return GUID.test(value) ? { systemUserId: value.toLowerCase() } : { domainName: value };
}

export function createDynamicsCreates(options: { db: Database; dynamics: DynamicsPort; mappings: MappingService }) {
  const { db, dynamics, mappings } = options;

  async function reject(intent: CreateIntent, subject: ActivitySubject, message: string): Promise<ToDynamicsResult> {
    const label = entityLabel(intent.entity);
    const written = Object.entries(intent.sent).map(([field, value]): ActivityField => ({ field, side: 'DYNAMICS', oldValue: null, newValue: value }));
    await db.prisma.$transaction(async (tx) => {
      await recordActivities(tx, [activity(subject, 'VALIDATION_REJECTED', `Sync Person to Microsoft: Dynamics refused to create the ${label}: ${message}`, written)]);
      await settleIntent(tx, intent.id, { state: 'FAILED', note: message });
    });
    return { status: 'rejected', message };
  }

  return {
    /** Sends (again) the journaled create and links the record with the created values as its base. */
    async finishToDynamics(intent: CreateIntent, existing: Link | null, subject: ActivitySubject, fence: WriteFence | undefined): Promise<ToDynamicsResult> {
      const { entity } = intent;
      // linked meanwhile to another record (matched by email while this create waited): sending it
      // now would only make a second record for the person
      const decision = existing ? decideRelink(existing, { entity, dynamicsId: intent.dynamicsId }) : null;
      if (existing && decision?.kind === 'refused') {
        const message = `Sync Person to Microsoft: the ${entityLabel(entity)} it was creating is not sent: ${decision.message}`;
        await db.prisma.$transaction(async (tx) => {
          await recordActivities(tx, [activity({ ...subject, linkId: existing.id }, 'SYNC_FAILED', message)]);
          await settleIntent(tx, intent.id, { state: 'FAILED', note: decision.message });
        });
        return { status: 'refused', link: existing, message };
      }
      const mapping = await mappings.forEntity(entity);
      let record: DynamicsRecordView;
      try {
        record = await dynamics.create(entity, intent.sent, mapping.bindings, ownerOf(intent.assignTo), fence, intent.dynamicsId);
      } catch (error) {
        if (error instanceof ConnectorError && (error.kind === 'validation' || error.kind === 'forbidden')) return reject(intent, subject, error.message);
        throw error;
      }
      // The base is what was created (never empty: an empty base turns a workflow's edit of the new
      // record into a fake collision). Whatever Dynamics holds differently (a default, a plug-in's
      // rewrite, or an edit made since the crash this finishes) is an ordinary change made in
      // Dynamics, carried to Marketo by the re-sync.
      const snapshot = baseAfterCreate(mapping.rules, intent.source, intent.sent, record.fields);
      const differs = mapping.rules.some((rule) => !sameValue(intent.source[rule.field] ?? null, record.fields[rule.field] ?? null, rule.type));
      const written = Object.entries(intent.sent).map(([field, value]): ActivityField => ({ field, side: 'DYNAMICS', oldValue: null, newValue: value }));
      const at = intent.createdAt.toISOString();
      const target = {
        marketoId: intent.marketoId!,
        entity,
        dynamicsId: record.id,
        snapshot,
        fieldOrigins: Object.fromEntries(Object.keys(snapshot).map((f) => [f, { side: 'MARKETO' as const, at }])),
        dynamicsEtag: record.etag,
        dynamicsVersion: record.version,
        intentId: intent.id,
      };
      const label = entityLabel(entity);
      const result = await relink(db.prisma, existing, target, (linked) => {
        const s = { ...subject, dynamicsId: record.id, linkId: linked.id };
        return [
          activity(s, 'CREATED_IN_DYNAMICS', `Sync Person to Microsoft: created ${label} ${record.id}${intent.assignTo ? `, owner ${intent.assignTo}` : ''}`, written),
          activity(s, 'LINKED', `person ${intent.marketoId} <-> ${label} ${record.id}`),
        ];
      }, { ...subject, dynamicsId: record.id });
      if (result.status === 'refused') {
        await settleIntent(db.prisma, intent.id, { state: 'FAILED', note: result.message });
        return result;
      }
      return { status: 'created', link: result.link, record, differs };
    },
  };
}

export type DynamicsCreates = ReturnType<typeof createDynamicsCreates>;
