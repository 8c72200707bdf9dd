import { editable, fieldOf, fieldsOfEntity, REJECTED_PREFIX, type Entity, type FieldSpec, type IntentLog, type Pair, type RecordRef, type Rng } from './model.ts';
import type { Actor, FieldValue, SyncSide } from './oracle.ts';
import type { World } from './world.ts';

// Edit generation: the campaign's people editing both simulators (single edits, same field on both
// sides, different fields, creates on both sides, email matches, qualification, deletes, the sync
// filter, values Dynamics refuses). Every edit goes into the intent log; the pairs model keeps
// what the campaign learnt about links, and agreements are observed once a round has settled.

export interface EditorCounters {
  edits: number;
  collisionsScripted: number;
  problems: string[];
}

/**
 * What an edit sets: a checkbox a person edits is one they flip. Setting a field to what it already
 * holds is no edit (Marketo logs no change for it, and nothing can tell it from no edit at all), and
 * two of them made at once on both sides are no collision.
 */
export function editedValue(field: FieldSpec, proposed: FieldValue, current: unknown): FieldValue {
  return field.kind === 'boolean' ? current !== true : proposed;
}

export function createEditor(world: World, rng: Rng, log: IntentLog, seed: number, counters: EditorCounters) {
  const { mkto, dv } = world;
  const pairs = new Map<number, Pair>();
  /** Marketo persons created by the script whose link is not known yet */
  const unresolved = new Map<number, { email: string; entity: Entity }>();
  /** Dynamics records created by the script, to find their Marketo person */
  const unresolvedDynamics = new Map<string, { email: string; entity: Entity }>();
  /** every Dynamics record the campaign knew as a person's (a qualified lead stays its person's) */
  const personOfRecord = new Map<string, number>();
  /** persons whose Sync Person call never reached the service: nothing links them, by design */
  const syncPersonFailed = new Map<number, string>();
  /** emails of persons whose create the campaign cut short with a kill: they must still end linked */
  const interruptedCreates = new Set<string>();
  /** persons the Marketo flow action must be told about */
  const changedPersons = new Set<number>();
  /** Sync Person calls wait until every edit of the round is made (no I/O between edits) */
  const deferredCalls: (() => Promise<void>)[] = [];
  let emailCounter = 0;
  const newEmail = (kind: string) => `chaos.${seed}.${kind}.${++emailCounter}@example.com`;

  function valueFor(field: FieldSpec, round: number): FieldValue {
    if (field.kind === 'boolean') return rng.chance(0.5);
    if (field.canonical === 'postalCode') return String(rng.int(10000, 99999));
    if (field.canonical === 'phone' || field.canonical === 'mobilePhone') return `+1 555 ${rng.int(1000, 9999)}`;
    return `${field.canonical} r${round} ${rng.int(1, 99_999)}`;
  }

  function newPair(marketoId: number, entity: Entity, dynamicsId: string, email: string): Pair {
    personOfRecord.set(dynamicsId.toLowerCase(), marketoId);
    return { marketoId, entity, dynamicsId, email, state: 'active', filteredOut: false, moving: false, editedIn: new Map(), racing: false };
  }

  /** One edit on one side, as a person (or an automation, a workflow) makes it through the admin API. */
  function editSide(pair: Pair, side: SyncSide, field: FieldSpec, proposed: FieldValue, round: number, actor: Actor = 'person', race: string | null = null): void {
    const current = field.kind === 'boolean' ? (side === 'MARKETO' ? mkto.getLead(pair.marketoId)?.[field.marketo] : dv.get(pair.entity, pair.dynamicsId)?.[field.dynamics]) : undefined;
    const value = editedValue(field, proposed, current);
    // logged before it is made: a plug-in rewriting it logs its own edit during the write, after this one
    const record: RecordRef = side === 'MARKETO' ? { marketoId: pair.marketoId } : { dynamicsId: pair.dynamicsId };
    log.edit({ actor, side, record, field: field.canonical, value, race, what: `edit of ${side === 'MARKETO' ? `person ${pair.marketoId}` : `${pair.entity} ${pair.dynamicsId.slice(0, 8)}`} in round ${round}` });
    counters.edits++;
    pair.editedIn.set(field.canonical, round);
    if (side === 'MARKETO') {
      mkto.updateLead(pair.marketoId, { [field.marketo]: value });
      changedPersons.add(pair.marketoId);
    } else {
      dv.update(pair.entity, pair.dynamicsId, { [field.dynamics]: value });
    }
  }

  /** The values a create sets are the creator's edits; the counterpart the sync creates agrees with them. */
  function logCreate(side: SyncSide, record: RecordRef, values: Record<string, FieldValue>, entity: Entity, what: string, counterpartCreatedBySync: boolean, race: string | null): void {
    for (const field of fieldsOfEntity(entity)) {
      if (field.canonical === 'email') continue;
      const value = values[side === 'MARKETO' ? field.marketo : field.dynamics];
      if (value === undefined || value === null) continue;
      log.edit({ actor: 'person', side, record, field: field.canonical, value, race, what });
    }
    if (!counterpartCreatedBySync) return;
    for (const field of fieldsOfEntity(entity)) {
      if (field.canonical === 'email') continue;
      const value = values[side === 'MARKETO' ? field.marketo : field.dynamics] ?? null;
      log.agreement({ record, field: field.canonical, value, how: `the sync creates the counterpart from the ${what}, so the base after the create is this value` });
    }
  }

  function createDynamics(round: number, entity: Entity, options: { email?: string; extra?: Record<string, FieldValue>; race?: string | null; matched?: boolean } = {}): string {
    const email = options.email ?? newEmail(entity);
    const values: Record<string, FieldValue> = { firstname: `Dyn${round}`, lastname: `Created ${emailCounter}`, emailaddress1: email, jobtitle: 'Analyst', ...(entity === 'lead' ? { companyname: 'Chaos Ltd' } : {}), ...options.extra };
    const created = dv.create(entity, values);
    const id = String(created[`${entity}id`]).toLowerCase();
    unresolvedDynamics.set(id, { email, entity });
    logCreate('DYNAMICS', { dynamicsId: id }, values, entity, `create of Dynamics ${entity} ${id.slice(0, 8)}`, !options.matched, options.race ?? null);
    counters.edits++;
    return id;
  }

  function createMarketo(round: number, entity: Entity, options: { extra?: Record<string, FieldValue>; race?: string | null; afterCall?: (answer: Awaited<ReturnType<World['marketoWebhook']>>) => void; whileCalling?: (email: string) => Promise<void> } = {}): number {
    const email = newEmail(`mkto-${entity}`);
    const values: Record<string, FieldValue> = { email, firstName: `Mkto${round}`, lastName: `Created ${emailCounter}`, title: 'Marketer', company: 'Chaos Ltd', ...options.extra };
    const person = mkto.createLead(values);
    unresolved.set(person.id, { email, entity });
    logCreate('MARKETO', { marketoId: person.id }, values, entity, `create of person ${person.id}, Sync Person as ${entity}`, true, options.race ?? null);
    counters.edits++;
    deferredCalls.push(async () => {
      const call = world.marketoWebhook('sync-person', { marketoId: person.id, syncAs: entity }).then((answer) => {
        if (typeof answer === 'object' && answer.status >= 500) counters.problems.push(`sync-person ${person.id} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
        // a call cut by the kill between create and link left a record: the sync must finish it
        if (typeof answer !== 'object' && !interruptedCreates.has(email)) syncPersonFailed.set(person.id, `its Sync Person to Microsoft call was ${answer} (the service was down); Marketo does not retry it`);
        options.afterCall?.(answer);
      });
      await Promise.all([call, options.whileCalling?.(email)]);
    });
    return person.id;
  }

  const activePairs = () => [...pairs.values()].filter((p) => p.state === 'active' && !p.racing);
  const touchedIn = (p: Pair, round: number) => [...p.editedIn.values()].some((r) => r === round);
  const fieldsFor = (pair: Pair) => editable.filter((f) => !f.leadOnly || pair.entity === 'lead');

  /** A record created on one side (or on both, to be matched by email). */
  function createRecords(kind: 'create-dynamics' | 'create-marketo' | 'match-by-email', round: number): void {
    switch (kind) {
      case 'create-dynamics':
        createDynamics(round, rng.pick(['lead', 'contact'] as const));
        return;
      case 'create-marketo':
        createMarketo(round, rng.pick(['lead', 'contact'] as const));
        return;
      case 'match-by-email': {
        // a person already in Marketo; Dynamics gets a contact with the same email: linked, not duplicated
        const email = newEmail('match');
        const values = { email: email.toUpperCase(), firstName: 'Match', lastName: `Existing ${emailCounter}` };
        const person = mkto.createLead(values);
        logCreate('MARKETO', { marketoId: person.id }, values, 'contact', `create of person ${person.id} (to be matched by email)`, false, null);
        counters.edits++;
        createDynamics(round, 'contact', { email, matched: true });
        return;
      }
    }
  }

  /** Edits of a linked pair's fields: on one side, on both (a collision), or one a Dynamics rule refuses. */
  function editFields(kind: 'single' | 'same-field' | 'different-fields' | 'validation', pair: Pair, round: number): void {
    switch (kind) {
      case 'single': {
        const side: SyncSide = pair.filteredOut ? 'DYNAMICS' : rng.pick(['MARKETO', 'DYNAMICS'] as const);
        const field = rng.pick(fieldsFor(pair));
        editSide(pair, side, field, valueFor(field, round), round);
        return;
      }
      case 'same-field': {
        if (pair.filteredOut) return;
        const field = rng.pick(fieldsFor(pair));
        editSide(pair, 'MARKETO', field, valueFor(field, round), round);
        editSide(pair, 'DYNAMICS', field, valueFor(field, round), round);
        counters.collisionsScripted++;
        return;
      }
      case 'different-fields': {
        if (pair.filteredOut) return;
        const available = fieldsFor(pair);
        const a = rng.pick(available);
        const b = rng.pick(available.filter((f) => f !== a));
        editSide(pair, 'MARKETO', a, valueFor(a, round), round);
        editSide(pair, 'DYNAMICS', b, valueFor(b, round), round);
        return;
      }
      case 'validation': {
        if (pair.entity !== 'lead' || pair.filteredOut) return;
        editSide(pair, 'MARKETO', fieldOf('title'), `${REJECTED_PREFIX} r${round} ${rng.int(1, 999)}`, round);
        return;
      }
    }
  }

  /** A pair's lifecycle: qualified, deleted on a side, filtered out or back in. */
  function changeLifecycle(kind: 'qualify' | 'delete-dynamics' | 'delete-marketo' | 'filter', pair: Pair, round: number): void {
    const touched = touchedIn(pair, round);
    switch (kind) {
      case 'qualify': {
        if (pair.entity !== 'lead' || pair.filteredOut || touched) return;
        const lead = dv.get('lead', pair.dynamicsId);
        if (!lead || lead['statecode'] !== 0) return;
        dv.qualifyLead(pair.dynamicsId);
        // the link moves to the new contact; its id is learnt after the round settles
        pair.entity = 'contact';
        pair.moving = true;
        counters.edits++;
        return;
      }
      case 'delete-dynamics': {
        if (!rng.chance(0.4) || touched) return;
        dv.delete(pair.entity, pair.dynamicsId);
        pair.state = 'deleted_in_dynamics';
        counters.edits++;
        return;
      }
      case 'delete-marketo': {
        if (!rng.chance(0.4) || touched) return;
        mkto.deleteLead(pair.marketoId);
        pair.state = 'deleted_in_marketo';
        changedPersons.add(pair.marketoId);
        counters.edits++;
        return;
      }
      case 'filter': {
        if (touched) return;
        // Yes -> No stops updates; No -> Yes syncs the record at once (with what Dynamics changed meanwhile)
        pair.filteredOut = !pair.filteredOut;
        dv.update(pair.entity, pair.dynamicsId, { new_synctomkto: !pair.filteredOut });
        counters.edits++;
        if (pair.filteredOut) {
          // an edit Marketo must not receive while the filter says No
          const field = rng.pick(fieldsFor(pair));
          editSide(pair, 'DYNAMICS', field, valueFor(field, round), round);
        }
        return;
      }
    }
  }

  /** One scripted edit; synchronous, so no webhook is delivered between two edits of a round. */
  function applyEdit(round: number): void {
    // while the service is down (round r + 0.5), pairs edited in round r are left alone: their
    // events may not have been synced yet, and two unsynced edits are a collision, not a sequence
    const pool = activePairs().filter((p) => !p.moving && (Number.isInteger(round) || !touchedIn(p, Math.floor(round))));
    const kind = rng.pick([
      'single', 'single', 'single', 'single', 'same-field', 'same-field', 'same-field', 'different-fields', 'different-fields',
      'create-dynamics', 'create-marketo', 'match-by-email', 'qualify', 'delete-dynamics', 'delete-marketo', 'filter', 'validation',
    ] as const);
    const pair = pool.length ? rng.pick(pool) : undefined;
    if (kind === 'create-dynamics' || kind === 'create-marketo' || kind === 'match-by-email') {
      createRecords(kind, round);
      return;
    }
    if (!pair) return;
    if (kind === 'qualify' || kind === 'delete-dynamics' || kind === 'delete-marketo' || kind === 'filter') changeLifecycle(kind, pair, round);
    else editFields(kind, pair, round);
  }

  /** Marketo's flow action for each edited person; some time out on Marketo's side, some are sent twice. */
  async function notifyMarketo(): Promise<boolean> {
    let lost = false;
    const calls = deferredCalls.splice(0);
    const ids = [...changedPersons];
    changedPersons.clear();
    await Promise.all([
      ...calls.map((call) => call()),
      ...ids.map(async (marketoId) => {
        const abort = rng.chance(0.15);
        const answer = await world.marketoWebhook('person-changed', { marketoId }, abort ? rng.int(1, 5) : undefined);
        if (answer === 'aborted' || answer === 'refused') lost = true;
        else if (answer.status >= 500) counters.problems.push(`person-changed ${marketoId} answered ${answer.status}`);
        if (rng.chance(0.1)) await world.marketoWebhook('person-changed', { marketoId });
      }),
    ]);
    return lost;
  }

  /** Learns the links of persons and records the script created, and moved links (qualification). */
  async function refreshPairs(): Promise<void> {
    for (const [marketoId, info] of unresolved) {
      const link = await world.linkOf({ marketoId });
      if (!link) continue;
      unresolved.delete(marketoId);
      pairs.set(marketoId, newPair(marketoId, link.dynamicsEntity === 'CONTACT' ? 'contact' : 'lead', link.dynamicsId, info.email));
    }
    for (const [dynamicsId, info] of unresolvedDynamics) {
      const link = await world.linkOf({ dynamicsId });
      if (!link) continue;
      unresolvedDynamics.delete(dynamicsId);
      const marketoId = Number(link.marketoId);
      personOfRecord.set(dynamicsId, marketoId);
      const existing = pairs.get(marketoId);
      if (existing) {
        existing.dynamicsId = dynamicsId;
        existing.entity = info.entity;
      } else {
        pairs.set(marketoId, newPair(marketoId, info.entity, dynamicsId, info.email));
      }
    }
    for (const pair of pairs.values()) {
      pair.racing = false;
      if (pair.state !== 'active') continue;
      const link = await world.linkOf({ marketoId: pair.marketoId });
      if (link && link.dynamicsId !== pair.dynamicsId && link.status === 'ACTIVE') {
        pair.dynamicsId = link.dynamicsId;
        pair.entity = link.dynamicsEntity === 'CONTACT' ? 'contact' : 'lead';
        personOfRecord.set(link.dynamicsId.toLowerCase(), pair.marketoId);
      }
      if (pair.moving && link?.dynamicsEntity === 'CONTACT') pair.moving = false;
    }
  }

  /**
   * Records every field both sides of an active pair hold equally. Only called when nothing is in
   * flight (a settled round), so no sync can have read before this moment and write after it.
   */
  function observeAgreements(how: string): void {
    for (const pair of pairs.values()) {
      if (pair.state !== 'active' || pair.filteredOut || pair.moving) continue;
      observePair(pair.marketoId, pair.entity, pair.dynamicsId, how);
    }
  }

  function observePair(marketoId: number, entity: Entity, dynamicsId: string, how: string, only?: readonly string[], bySyncWrite = false): void {
    const person = mkto.getLead(marketoId);
    const record = dv.get(entity, dynamicsId);
    if (!person || !record) return;
    for (const field of fieldsOfEntity(entity)) {
      if (only && !only.includes(field.canonical)) continue;
      const m = person[field.marketo] as FieldValue | undefined;
      const d = record[field.dynamics] as FieldValue | undefined;
      const norm = (v: FieldValue | undefined) => (v === undefined || v === '' ? null : v);
      const equal = field.kind === 'email' && typeof m === 'string' && typeof d === 'string' ? m.toLowerCase() === d.toLowerCase() : norm(m) === norm(d);
      if (equal) log.agreement({ record: { marketoId }, field: field.canonical, value: norm(m), how, bySyncWrite });
    }
  }

  /**
   * The sync's write just landed (observed synchronously inside the simulator): every written field
   * the other side holds equally is an agreement at this very moment, in the log's own order.
   */
  function observeMarketoWrite(body: unknown, result: unknown): void {
    const inputs = (body as { input?: Record<string, unknown>[] } | undefined)?.input ?? [];
    const results = Array.isArray(result) ? (result as { id?: number; status?: string }[]) : [];
    inputs.forEach((input, i) => {
      const answer = results[i];
      if (!answer || (answer.status !== 'updated' && answer.status !== 'created') || answer.id === undefined) return;
      const pair = pairs.get(answer.id);
      if (!pair || pair.state !== 'active' || pair.filteredOut || pair.moving) return;
      const written = fieldsOfEntity(pair.entity).filter((f) => f.marketo in input).map((f) => f.canonical);
      observePair(pair.marketoId, pair.entity, pair.dynamicsId, 'the sync’s write landed in Marketo while Dynamics held the same value', written, true);
    });
  }

  function observeDynamicsWrite(dynamicsId: string, written: readonly string[]): void {
    const person = personOfRecord.get(dynamicsId.toLowerCase());
    const pair = person === undefined ? undefined : pairs.get(person);
    if (!pair || pair.dynamicsId !== dynamicsId.toLowerCase() || pair.state !== 'active' || pair.filteredOut || pair.moving) return;
    observePair(pair.marketoId, pair.entity, pair.dynamicsId, 'the sync’s write landed in Dynamics while Marketo held the same value', written, true);
  }

  /** The person an edit or agreement is about, from what the campaign learnt (or the service's link). */
  async function personOf(record: RecordRef): Promise<number | null> {
    if ('marketoId' in record) return record.marketoId;
    const id = record.dynamicsId.toLowerCase();
    const known = personOfRecord.get(id);
    if (known !== undefined) return known;
    const link = await world.linkOf({ dynamicsId: id });
    const found = link ? Number(link.marketoId) : null;
    if (found !== null) personOfRecord.set(id, found);
    return found;
  }

  return {
    pairs,
    syncPersonFailed,
    editSide,
    valueFor,
    createDynamics,
    createMarketo,
    applyEdit,
    notifyMarketo,
    refreshPairs,
    observeAgreements,
    observePair,
    observeMarketoWrite,
    observeDynamicsWrite,
    personOf,
    personOfRecordNow: (dynamicsId: string) => personOfRecord.get(dynamicsId.toLowerCase()),
    interruptedCreates,
    fieldsFor,
    activePairs,
    markChanged: (marketoId: number) => changedPersons.add(marketoId),
    newEmail,
  };
}

export type Editor = ReturnType<typeof createEditor>;
