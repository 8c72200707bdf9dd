import type { MarketoActivity } from '../connectors/marketo/marketo.schemas.ts';
import type { NewChangeEvent } from '../inbox/inbox.ts';
import { mergedEvent, parseMergeIds } from '../sync/merged-records.ts';
import type { OverwrittenEdit } from '../sync/overwritten.ts';
import type { LinkedEntity } from '../sync/policy.ts';
import type { FieldBinding } from '../sync/ports.ts';
import { normalise, sameValue, type CanonicalValue } from '../sync/values.ts';
import { readCursor, requestFullReconcile, writeCursor } from './cursors.ts';
import { ENTITIES, type SweepRun, type SweepSettings } from './run.ts';

// The sweep's Marketo discovery: the lead-changes feed (changes of mapped fields of linked
// persons), Merge Leads activities and the deleted-leads feed, each paged from a stored paging token. A page's events are
// in the inbox before the token moves past it; each page is paid for to the quota guard first.

const NEW_LEAD = 12;
const MERGE_LEADS = 32;

type Bindings = Map<string, FieldBinding & { entity: LinkedEntity }>;
type FieldChange = { name: string; newValue?: string | null | undefined };

/**
 * Within one run's pages of Marketo's lead changes: a person's change of a field followed by the
 * sync's own change of that field to another value is an edit the sync's write may have overwritten
 * unseen (sync/overwritten.ts decides, with the journal).
 */
function overwriteWitness() {
  const personSet = new Map<string, string | null>();
  const key = (leadId: number, name: string) => `${leadId}:${name}`;
  return {
    personChanged(leadId: number, fields: readonly FieldChange[]): void {
      for (const f of fields) personSet.set(key(leadId, f.name), f.newValue ?? null);
    },
    syncChanged(leadId: number, fields: readonly FieldChange[], bindings: ReadonlyMap<string, FieldBinding>): OverwrittenEdit[] {
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

function attribute(activity: MarketoActivity, name: string): unknown {
  return activity.attributes?.find((a) => a.name === name)?.value;
}

interface PersonLink {
  marketoId: number;
  dynamicsEntity: LinkedEntity;
  dynamicsId: string;
  snapshot: unknown;
}

type PersonChange = { guid: string; fields: Set<string>; overwritten: OverwrittenEdit[] };

/**
 * A page of lead changes, per linked person: the fields that changed and differ from what the
 * link last synced, and the person's edits the sync's own writes overwrote. Unlinked persons,
 * new leads and the sync's echoes are counted and left out.
 */
function personChanges(
  activities: readonly MarketoActivity[],
  known: { links: Map<number, PersonLink>; lead: Bindings; contact: Bindings; apiUser: () => string | undefined },
  witness: ReturnType<typeof overwriteWitness>,
  counts: SweepRun['counts'],
): Map<number, PersonChange> {
  const changed = new Map<number, PersonChange>();
  const changeOf = (leadId: number, guid: string) => {
    const entry = changed.get(leadId) ?? { guid, fields: new Set<string>(), overwritten: [] };
    entry.guid = guid;
    changed.set(leadId, entry);
    return entry;
  };
  for (const activity of activities) {
    const link = known.links.get(activity.leadId);
    if (!link) {
      counts.unlinkedSkipped++;
      continue;
    }
    if (activity.activityTypeId === NEW_LEAD) continue;
    const bindings = link.dynamicsEntity === 'LEAD' ? known.lead : known.contact;
    const apiUser = known.apiUser();
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
  return changed;
}

/** One run's Marketo discovery: `merges()`, `changes()` and `deletes()`. */
export function marketoDiscovery(s: SweepSettings, run: SweepRun) {
  const { prisma, options, overlapMs, maxEmptyPages, marketoCursorMaxAgeMs } = s;
  const { marketo, mappings } = options;
  const { runId, counts, notes, checkAbort, enqueueAll, spendMarketo } = run;

  async function marketoBindings(): Promise<Bindings[]> {
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

  async function changes(): Promise<void> {
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
      const links: PersonLink[] = leadIds.length
        ? await prisma.syncLink.findMany({
            where: { marketoId: { in: leadIds } },
            select: { marketoId: true, dynamicsEntity: true, dynamicsId: true, snapshot: true, status: true },
          })
        : [];
      const byPerson = new Map(links.map((l) => [l.marketoId, l]));
      const changed = personChanges(page.items, { links: byPerson, lead: lead!, contact: contact!, apiUser: () => options.marketoApiUser?.() }, witness, counts);
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
  async function merges(): Promise<void> {
    const { token } = await marketoCursor('mergeleads');
    await spendMarketo(1, 'the next page of merges');
    for await (const page of marketo.iterateActivities({ nextPageToken: token, activityTypeIds: [MERGE_LEADS], maxEmptyPages })) {
      counts.marketoCalls++;
      const found = page.items
        .filter((a) => a.activityTypeId === MERGE_LEADS)
        .map((a) => ({ guid: a.marketoGUID, winnerId: a.leadId, loserIds: parseMergeIds(attribute(a, 'Merge IDs')).filter((id) => id !== a.leadId) }))
        .filter((m) => m.loserIds.length > 0);
      for (const m of found) m.loserIds.forEach((id) => mergedAway.add(id));
      const ids = [...new Set(found.flatMap((m) => [m.winnerId, ...m.loserIds]))];
      const linked = new Set(ids.length ? (await prisma.syncLink.findMany({ where: { marketoId: { in: ids } }, select: { marketoId: true } })).map((l) => l.marketoId) : []);
      const events = found
        .filter((m) => linked.has(m.winnerId) || m.loserIds.some((id) => linked.has(id)))
        .map((m) => mergedEvent({ side: 'MARKETO', winnerId: m.winnerId, loserIds: m.loserIds }, { origin: 'SWEEP', dedupeKey: `sweep:mk:merge:${m.guid}`, payload: { runId } }));
      counts.marketoMerges = (counts.marketoMerges ?? 0) + events.length;
      await enqueueAll(events);
      await writeCursor(prisma, 'MARKETO', 'mergeleads', { token: page.nextPageToken, watermark: new Date() });
      checkAbort();
      if (page.moreResult) await spendMarketo(1, 'the next page of merges');
    }
  }

  async function deletes(): Promise<void> {
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

  return { merges, changes, deletes };
}
