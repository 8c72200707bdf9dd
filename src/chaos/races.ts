import type { Editor } from './edits.ts';
import { fieldOf, PLUGIN_REWRITE, sleep, type Entity, type FieldSpec, type IntentLog, type Pair, type Rng } from './model.ts';
import type { FieldValue } from './oracle.ts';
import type { World } from './world.ts';

// The races that found issue 12's bugs. Unlike the scripted rounds, these edit WHILE the engine
// works on the same person; what is right is then decided by the intent oracle, not by a script.
// Each is seeded (which pair, which field, which delay), named, and counted for the summary.

export const RACES = {
  afterCreateInMarketo: 'edit within a second of the sync creating the Marketo person (Person is Created -> Change Data Value)',
  afterCreateInDynamics: 'edit within a second of Sync Person creating the Dynamics lead (a workflow)',
  slowDataverseWrite: 'edit during a slow Dataverse write',
  slowMarketoWrite: 'edit during a slow Marketo write',
  killMidBatch: 'kill -9 mid-batch',
  leaseExpiry: 'leases expire during a long Dataverse retry',
  pluginRewrite: 'a Dataverse plug-in rewrites a value (usa -> United States)',
} as const;

/** how long a trigger waits for the sync to create the record; long, so a busy machine still runs the race */
const WATCH_MS = 60_000;
// a trigger that fires within ~10 ms of the record appearing; the delay drawn after it spreads the edit over the first second
const POLL_MS = 10;

export function createRaces(world: World, editor: Editor, log: IntentLog, rng: Rng, options: { leaseSeconds: number }) {
  const { mkto, dv } = world;

  /** An automation's or a workflow's edit of a record the campaign has no pair for yet. */
  function automationEdit(side: 'MARKETO' | 'DYNAMICS', target: { marketoId: number } | { entity: Entity; dynamicsId: string }, field: FieldSpec, value: FieldValue, race: string): void {
    if ('marketoId' in target) {
      log.edit({ actor: 'marketo-automation', side, record: { marketoId: target.marketoId }, field: field.canonical, value, race, what: `Marketo smart campaign on new person ${target.marketoId}` });
      mkto.updateLead(target.marketoId, { [field.marketo]: value });
    } else {
      log.edit({ actor: 'dynamics-workflow', side, record: { dynamicsId: target.dynamicsId }, field: field.canonical, value, race, what: `Dynamics workflow on new ${target.entity} ${target.dynamicsId.slice(0, 8)}` });
      dv.update(target.entity, target.dynamicsId, { [field.dynamics]: value });
    }
  }

  async function watch<T>(find: () => T | undefined): Promise<T | undefined> {
    const deadline = Date.now() + WATCH_MS;
    while (Date.now() < deadline) {
      const found = find();
      if (found !== undefined) return found;
      await sleep(POLL_MS);
    }
    return undefined;
  }

  /** (i) Dynamics creates a record; the moment the sync's Marketo person appears, a smart campaign edits it. */
  async function afterCreateInMarketo(round: number): Promise<void> {
    const entity = rng.pick(['lead', 'contact'] as const);
    const email = editor.newEmail(`race-${entity}`);
    const dynamicsId = editor.createDynamics(round, entity, { email, race: RACES.afterCreateInMarketo });
    const field = fieldOf(rng.pick(['title', 'phone', 'city'] as const));
    const value = field.canonical === 'phone' ? `+1 555 ${rng.int(1000, 9999)}` : `Automation r${round} ${rng.int(1, 99_999)}`;
    const delayMs = rng.int(0, 400);
    // the store's email index: polling every few ms must not cost a scan of every person
    const personId = await watch(() => mkto.store.findBy('email', email)[0]);
    if (personId === undefined) return;
    const person = { id: personId };
    editor.observePair(person.id, entity, dynamicsId, 'first sight of the person the sync created');
    await sleep(delayMs);
    automationEdit('MARKETO', { marketoId: person.id }, field, value, RACES.afterCreateInMarketo);
    log.raced(RACES.afterCreateInMarketo);
    // the smart campaign's next step: "Data Value Changes" calls the person-changed webhook
    await world.marketoWebhook('person-changed', { marketoId: person.id });
  }

  /** (i) Sync Person creates the lead; the moment it exists, a Dynamics workflow edits it. */
  function afterCreateInDynamics(round: number): void {
    const field = fieldOf(rng.pick(['title', 'phone', 'city'] as const));
    const value = field.canonical === 'phone' ? `+1 555 ${rng.int(1000, 9999)}` : `Workflow r${round} ${rng.int(1, 99_999)}`;
    const delayMs = rng.int(0, 400);
    const marketoId = editor.createMarketo(round, 'lead', {
      race: RACES.afterCreateInDynamics,
      whileCalling: async (email) => {
        const lead = await watch(() => dv.list('lead').find((r) => typeof r['emailaddress1'] === 'string' && r['emailaddress1'].toLowerCase() === email));
        if (!lead) return;
        const dynamicsId = String(lead['leadid']).toLowerCase();
        editor.observePair(marketoId, 'lead', dynamicsId, 'first sight of the lead Sync Person created');
        await sleep(delayMs);
        automationEdit('DYNAMICS', { entity: 'lead', dynamicsId }, field, value, RACES.afterCreateInDynamics);
        log.raced(RACES.afterCreateInDynamics);
      },
    });
  }

  function racePair(): Pair | undefined {
    const pool = editor.activePairs().filter((p) => !p.moving && !p.filteredOut);
    const pair = pool.length ? rng.pick(pool) : undefined;
    if (pair) pair.racing = true;
    return pair;
  }

  /** A first edit that the sync picks up, then a second edit of the same person while it works. */
  async function editWhileSyncing(pair: Pair, round: number, first: 'MARKETO' | 'DYNAMICS', midway: () => Promise<void>, race: string): Promise<void> {
    const fields = editor.fieldsFor(pair).filter((f) => f.canonical !== PLUGIN_REWRITE.field);
    const field = rng.pick(fields);
    const other = rng.pick(fields.filter((f) => f !== field));
    const sameField = rng.chance(0.5);
    const secondValue = editor.valueFor(sameField ? field : other, round);
    editor.editSide(pair, first, field, editor.valueFor(field, round), round, 'person', race);
    if (first === 'MARKETO') await world.marketoWebhook('person-changed', { marketoId: pair.marketoId });
    await world.waitForWork(3_000);
    await midway();
    // the same field on Dynamics (a genuine collision, or a conflict on write), or another
    // field on Marketo (a stale value of it must not be written back). Never the field the sync is
    // writing to Marketo: Marketo has no conditional write, so no sync could keep that edit.
    if (sameField) editor.editSide(pair, 'DYNAMICS', field, secondValue, round, 'person', race);
    else {
      editor.editSide(pair, 'MARKETO', other, secondValue, round, 'person', race);
      await world.marketoWebhook('person-changed', { marketoId: pair.marketoId });
    }
    log.raced(race);
  }

  /** (ii) Dataverse answers slowly (under the client timeout) while the person is edited again. */
  async function slowDataverseWrite(round: number): Promise<void> {
    const pair = racePair();
    if (!pair) return;
    dv.injectFault({ kind: 'latency', count: 4, ms: 1_000 });
    const pause = rng.int(100, 700);
    await editWhileSyncing(pair, round, 'MARKETO', () => sleep(pause), RACES.slowDataverseWrite);
  }

  /** (ii) Marketo answers slowly while the person is edited again (never the field the sync writes to Marketo). */
  async function slowMarketoWrite(round: number): Promise<void> {
    const pair = racePair();
    if (!pair) return;
    mkto.setLatency(700);
    const pause = rng.int(100, 500);
    try {
      await editWhileSyncing(pair, round, 'DYNAMICS', () => sleep(pause), RACES.slowMarketoWrite);
      await sleep(1_000);
    } finally {
      mkto.setLatency(0);
    }
  }

  /** (iv) Dataverse throttles longer than the leases last; the person is edited again after they expired. */
  async function leaseExpiry(round: number): Promise<void> {
    const pair = racePair();
    if (!pair) return;
    dv.injectFault({ kind: 'rate_limit', count: 3, retryAfterSeconds: options.leaseSeconds - 2 });
    await editWhileSyncing(pair, round, 'MARKETO', () => sleep((options.leaseSeconds + 1) * 1000), RACES.leaseExpiry);
  }

  /** (v) A person types "usa" in Marketo; the sync writes it to Dynamics, whose plug-in stores "United States". */
  async function pluginRewrite(round: number): Promise<void> {
    if (rng.chance(0.5)) {
      const pair = racePair();
      if (!pair) return;
      editor.editSide(pair, 'MARKETO', fieldOf(PLUGIN_REWRITE.field), rng.pick(['usa', 'USA', 'Usa']), round, 'person', RACES.pluginRewrite);
      await world.marketoWebhook('person-changed', { marketoId: pair.marketoId });
    } else {
      // Sync Person creates the lead with "usa": the plug-in rewrites it inside the create
      editor.createMarketo(round, rng.pick(['lead', 'contact'] as const), { extra: { country: 'usa' }, race: RACES.pluginRewrite });
    }
  }

  /** Logs every plug-in rewrite as the plug-in's own edit, at the moment it happens. */
  function listenToPlugin(): void {
    dv.onValueRewrite((applied) => {
      log.edit({
        actor: 'dataverse-plugin',
        side: 'DYNAMICS',
        record: { dynamicsId: applied.id },
        field: PLUGIN_REWRITE.field,
        value: applied.to,
        rewrites: applied.from,
        race: RACES.pluginRewrite,
        what: `plug-in rewrite of ${JSON.stringify(applied.from)} on ${applied.table} ${applied.id.slice(0, 8)} written by ${applied.userId === world.dataverseSim.syncUserId ? 'the sync' : 'a person'}`,
      });
      if (applied.userId === world.dataverseSim.syncUserId) log.raced(RACES.pluginRewrite);
    });
  }

  /** This round's races, chosen by the seed; they run together, each on its own pair. */
  async function run(round: number, rounds: number): Promise<void> {
    const started: Promise<void>[] = [];
    for (let i = 0; i < rng.int(1, 2); i++) started.push(afterCreateInMarketo(round));
    for (let i = 0; i < rng.int(1, 2); i++) afterCreateInDynamics(round);
    started.push(editor.notifyMarketo().then(() => undefined));
    started.push(slowDataverseWrite(round));
    if (round % 2 === 1 || round === rounds) started.push(slowMarketoWrite(round), leaseExpiry(round));
    started.push(pluginRewrite(round));
    await Promise.all(started);
    // Sync Person calls queued by the plug-in race
    await editor.notifyMarketo();
  }

  return { run, listenToPlugin };
}
