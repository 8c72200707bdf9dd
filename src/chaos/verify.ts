import type { Database } from '../db/database.ts';
import type { Editor } from './edits.ts';
import { fieldsOfEntity, type IntentLog } from './model.ts';
import type { Agreement, FieldValue, FinalPair, IntentEdit, OracleInput } from './oracle.ts';
import { fieldKinds } from './model.ts';
import type { World, WorldLink } from './world.ts';

// Verification, the I/O half: the intent oracle's input gathered from the simulators, the
// service's GraphQL API and the campaign's log; and the checks the oracle does not make (nothing
// accepted is lost from the inbox, nothing is duplicated, deletes never cascade).

export interface InvariantFigures {
  events: number;
  eventsDone: number;
  eventsDead: number;
  retries: number;
  lost: number;
  duplicates: number;
}

/** The records the sync itself created, as the simulators saw the creates land. */
export interface SyncCreates {
  dynamics: Map<string, { table: string; email: string }>;
  marketo: Map<number, string>;
}

export function watchSyncCreates(world: World): SyncCreates {
  const created: SyncCreates = { dynamics: new Map(), marketo: new Map() };
  world.dv.onWrite((change) => {
    if (change.message !== 'Create' || change.userId !== world.dataverseSim.syncUserId) return;
    const email = change.record?.values['emailaddress1'];
    created.dynamics.set(change.id.toLowerCase(), { table: change.table.logicalName, email: typeof email === 'string' ? email : '' });
  });
  world.mkto.onApiCall((call) => {
    if (call.phase !== 'after' || call.endpoint !== 'leads.sync' || !Array.isArray(call.result)) return;
    const inputs = (call.body as { input?: Record<string, unknown>[] } | undefined)?.input ?? [];
    (call.result as { id?: number; status?: string }[]).forEach((r, i) => {
      const email = inputs[i]?.['email'];
      if (r.status === 'created' && r.id !== undefined) created.marketo.set(r.id, typeof email === 'string' ? email : '');
    });
  });
  return created;
}

/** Every link, read through GraphQL while the service still runs. */
export async function allLinks(world: World): Promise<WorldLink[]> {
  const links: WorldLink[] = [];
  let after: string | null = null;
  for (;;) {
    const page: { links: { edges: { cursor: string; node: WorldLink }[]; pageInfo: { hasNextPage: boolean } } } = await world.graphql(
      'query($after: String) { links(first: 40, after: $after) { edges { cursor node { marketoId dynamicsEntity dynamicsId status fields { field value blocked { side } } } } pageInfo { hasNextPage } } }',
      { after },
    );
    links.push(...page.links.edges.map((e) => e.node));
    if (!page.links.pageInfo.hasNextPage || page.links.edges.length === 0) return links;
    after = page.links.edges.at(-1)!.cursor;
  }
}

/** What the oracle judges: edits and agreements tied to persons, both sides as they ended, the log. */
export async function gatherOracleInput(world: World, editor: Editor, log: IntentLog, links: readonly WorldLink[]): Promise<OracleInput> {
  const edits: IntentEdit[] = [];
  for (const e of log.edits) {
    edits.push({ seq: e.seq, at: e.at, actor: e.actor, side: e.side, person: await editor.personOf(e.record), field: e.field, value: e.value, race: e.race, what: e.what, rewrites: e.rewrites });
  }
  const agreements: Agreement[] = [];
  for (const a of log.agreements) {
    const person = await editor.personOf(a.record);
    if (person !== null) agreements.push({ seq: a.seq, at: a.at, person, field: a.field, value: a.value, how: a.how, bySyncWrite: a.bySyncWrite });
  }
  const pairs = new Map<number, FinalPair>();
  for (const link of links) {
    const person = Number(link.marketoId);
    const entity = link.dynamicsEntity === 'CONTACT' ? 'contact' : 'lead';
    const marketo = world.mkto.getLead(person);
    const dynamics = world.dv.get(entity, link.dynamicsId);
    const outOfScope =
      link.status !== 'ACTIVE'
        ? `the link is ${link.status}`
        : !marketo
          ? 'the Marketo person is gone'
          : !dynamics
            ? `the Dynamics ${entity} is gone`
            : dynamics['new_synctomkto'] === false
              ? 'new_synctomkto is No'
              : null;
    const specs = fieldsOfEntity(entity);
    pairs.set(person, {
      person,
      entity: link.dynamicsEntity === 'CONTACT' ? 'CONTACT' : 'LEAD',
      dynamicsId: link.dynamicsId,
      outOfScope,
      fields: specs.map((f) => f.canonical),
      marketo: Object.fromEntries(specs.map((f) => [f.canonical, (marketo?.[f.marketo] ?? null) as FieldValue])),
      dynamics: Object.fromEntries(specs.map((f) => [f.canonical, (dynamics?.[f.dynamics] ?? null) as FieldValue])),
      snapshot: Object.fromEntries((link.fields ?? []).filter((f) => f.blocked === null).map((f) => [f.field, f.value])),
    });
  }
  // persons the campaign deleted (or whose record it deleted) may have no link under their id any more
  for (const pair of editor.pairs.values()) {
    if (pairs.has(pair.marketoId) || pair.state === 'active') continue;
    pairs.set(pair.marketoId, { person: pair.marketoId, entity: pair.entity === 'lead' ? 'LEAD' : 'CONTACT', dynamicsId: pair.dynamicsId, outOfScope: pair.state.replaceAll('_', ' '), fields: [], marketo: {}, dynamics: {} });
  }
  for (const [person, reason] of editor.syncPersonFailed) {
    if (!pairs.has(person)) pairs.set(person, { person, entity: 'LEAD', dynamicsId: '', outOfScope: reason, fields: [], marketo: {}, dynamics: {} });
  }
  return { edits, agreements, pairs: [...pairs.values()], activities: await world.activities(), fieldKinds };
}

/** The inbox kept everything it accepted; nothing is duplicated; deletes never cascade. */
export async function checkInvariants(
  prisma: Database['prisma'],
  world: World,
  editor: Editor,
  syncCreates: SyncCreates,
  acceptedEventIds: ReadonlySet<string>,
  problems: string[],
): Promise<InvariantFigures> {
  const figures: InvariantFigures = { events: 0, eventsDone: 0, eventsDead: 0, retries: 0, lost: 0, duplicates: 0 };
  const events = await prisma.changeEvent.findMany({ select: { id: true, status: true, attempts: true, lastError: true } });
  figures.events = events.length;
  const byId = new Map(events.map((e) => [e.id, e]));
  for (const event of events) {
    if (event.status === 'DONE') figures.eventsDone++;
    else if (event.status === 'DEAD') {
      figures.eventsDead++;
      if (!event.lastError) {
        figures.lost++;
        problems.push(`event ${event.id} is DEAD without a reason`);
      }
    } else {
      figures.lost++;
      problems.push(`event ${event.id} ended ${event.status}, neither DONE nor DEAD`);
    }
    figures.retries += Math.max(0, event.attempts - 1);
  }
  for (const id of acceptedEventIds) {
    if (!byId.has(id)) {
      figures.lost++;
      problems.push(`accepted event ${id} is not in the inbox`);
    }
  }

  const dupes = (keys: string[]) => {
    const seen = new Map<string, number>();
    for (const key of keys) seen.set(key, (seen.get(key) ?? 0) + 1);
    return [...seen].filter(([, n]) => n > 1);
  };
  const emailsOf = (rows: Record<string, unknown>[], key: string) => rows.map((r) => (typeof r[key] === 'string' ? r[key].toLowerCase() : '')).filter((e) => e !== '');
  const links = await prisma.syncLink.findMany();
  const groups: [string, [string, number][]][] = [
    ['Marketo person', dupes(emailsOf(world.mkto.listLeads({ limit: 1_000_000 }), 'email'))],
    ['Dynamics lead', dupes(emailsOf(world.dv.list('lead'), 'emailaddress1'))],
    ['Dynamics contact', dupes(emailsOf(world.dv.list('contact'), 'emailaddress1'))],
    ['active links to Dynamics record', dupes(links.filter((l) => l.status === 'ACTIVE').map((l) => l.dynamicsId))],
    ['active links of person', dupes(links.filter((l) => l.status === 'ACTIVE').map((l) => String(l.marketoId)))],
  ];
  for (const [what, list] of groups) {
    for (const [key, n] of list) {
      figures.duplicates++;
      problems.push(`${n} ${what}s share ${key}`);
    }
  }

  // record identity, not email alone: each record the sync created is the one record of a person
  // (held by a link, or known to the campaign as a person's); anything else is a second record for
  // one intent, or a create whose link was lost
  const linkedDynamics = new Set(links.map((l) => l.dynamicsId.toLowerCase()));
  const linkedPersons = new Set(links.map((l) => Number(l.marketoId)));
  for (const [id, info] of syncCreates.dynamics) {
    if (linkedDynamics.has(id) || editor.personOfRecordNow(id) !== undefined || !world.dv.get(info.table, id)) continue;
    figures.duplicates++;
    problems.push(`the sync created ${info.table} ${id} (${info.email}) and no link holds it: a second record for one person, or a create whose link was lost`);
  }
  for (const [id, email] of syncCreates.marketo) {
    if (linkedPersons.has(id) || editor.pairs.has(id) || !world.mkto.getLead(id)) continue;
    figures.duplicates++;
    problems.push(`the sync created Marketo person ${id} (${email}) and no link holds it: a second person for one record, or a create whose link was lost`);
  }

  for (const pair of editor.pairs.values()) {
    if (pair.state === 'deleted_in_dynamics' && !world.mkto.getLead(pair.marketoId)) {
      figures.lost++;
      problems.push(`person ${pair.marketoId} was deleted although only its Dynamics ${pair.entity} was`);
    }
    if (pair.state === 'deleted_in_marketo' && !world.dv.get(pair.entity, pair.dynamicsId)) {
      figures.lost++;
      problems.push(`${pair.entity} ${pair.dynamicsId} was deleted although only its Marketo person was`);
    }
  }
  return figures;
}
