import type { MarketoApiCall } from '../sandbox/marketo/index.ts';
import type { Editor } from './edits.ts';
import { fields, PLUGIN_REWRITE, sleep, type FieldSpec, type IntentLog, type Pair, type Rng } from './model.ts';
import type { World } from './world.ts';

// The faults of issue 24, aimed at the moment a replica has work in hand, as production meets them:
// a replica frozen past its leases right after it read a person being edited; a replica killed
// between a create and its link; Dataverse answers lost after the write was applied; Marketo writes
// that time out after landing; a marketer editing the very field the sync is writing; an
// asynchronous plug-in editing another mapped column as the sync user. Each is counted where it
// takes effect (the signal reached a live replica, the simulator produced the faulty answer, the
// edit landed), never where it was armed: a fault that never fired was not tested.

export const NEW_FAULTS = {
  pause: 'SIGSTOP of a replica with work in hand, past its leases, then SIGCONT',
  killBetweenCreateAndLink: 'kill -9 of the replica between a create and its link',
  dataverseAnswerLost: 'Dataverse answer lost after the write was applied (single request)',
  dataverseBatchAnswerLost: 'Dataverse answer lost after the write was applied ($batch)',
  marketoWriteTimedOut: 'Marketo write timed out after landing',
  editOfFieldBeingWritten: 'a marketer edits the very field the sync is writing to Marketo',
  asyncPlugin: 'an asynchronous plug-in edits another mapped column as the sync user',
} as const;
export type NewFault = keyof typeof NEW_FAULTS;

export const noFaultsFired = (): Record<NewFault, number> => ({
  pause: 0,
  killBetweenCreateAndLink: 0,
  dataverseAnswerLost: 0,
  dataverseBatchAnswerLost: 0,
  marketoWriteTimedOut: 0,
  editOfFieldBeingWritten: 0,
  asyncPlugin: 0,
});

export interface WorkFaultOptions {
  leaseSeconds: number;
  say: (line: string) => void;
  /** faults this campaign leaves out */
  withhold?: ReadonlySet<NewFault>;
}

const byMarketoName = new Map(fields.map((f) => [f.marketo, f]));
const byDynamicsName = new Map(fields.map((f) => [f.dynamics, f]));
/** never the email (identity) nor the country the synchronous plug-in rewrites */
const editableHere = (f: FieldSpec | undefined): f is FieldSpec => f !== undefined && f.canonical !== 'email' && f.canonical !== PLUGIN_REWRITE.field;

export function createWorkFaults(world: World, editor: Editor, log: IntentLog, rng: Rng, options: WorkFaultOptions) {
  const { mkto, dv, replicas } = world;
  const syncUserId = world.dataverseSim.syncUserId;
  const fired = noFaultsFired();
  /** shots left this round per fault the campaign aims itself */
  const shots = { pause: 0, kill: 0, edit: 0, plugin: 0 };
  let editPhase: MarketoApiCall['phase'] = 'before';
  let round = 0;
  let applyingPlugin = false;
  /** webhooks and plug-in steps started by the hooks; awaited before the round settles */
  const pending: Promise<unknown>[] = [];

  const inScope = (pair: Pair | undefined): pair is Pair => pair !== undefined && pair.state === 'active' && !pair.filteredOut && !pair.moving;

  /** SIGSTOP the replica that just read persons of which one is being edited this round. */
  function pauseReader(call: MarketoApiCall): void {
    if (shots.pause <= 0 || call.endpoint !== 'leads.query' || call.phase !== 'after' || call.params.get('filterType') !== 'id') return;
    const ids = (call.params.get('filterValues') ?? '').split(',').map(Number);
    const edited = ids.map((id) => editor.pairs.get(id)).find((p) => inScope(p) && [...p.editedIn.values()].includes(round));
    if (!edited) return;
    const replica = replicas.ofPort(call.remotePort);
    if (!replica) return;
    shots.pause--;
    const ms = (options.leaseSeconds + rng.int(2, 6)) * 1000;
    // A few ms after the answer goes out: the replica holds it and is planning, journaling or
    // sending its write. Frozen before it read the answer, its client's timeout (short in the
    // campaign) would fire on waking and throw the answer away.
    const afterMs = rng.int(2, 30);
    pending.push(
      sleep(afterMs).then(() => {
        if (!replicas.pause(replica, ms, () => options.say(`  replica ${replica.index} resumed (SIGCONT)`))) return;
        fired.pause++;
        options.say(`  replica ${replica.index} SIGSTOPped for ${ms / 1000} s, ${afterMs} ms after Marketo answered its read of person ${edited.marketoId}`);
      }),
    );
  }

  /** The marketer's edit of a field the sync is writing to Marketo, landing just before or after it. */
  function editFieldBeingWritten(call: MarketoApiCall): void {
    if (shots.edit <= 0 || call.endpoint !== 'leads.sync' || call.phase !== editPhase) return;
    const body = call.body as { action?: string; input?: Record<string, unknown>[] } | undefined;
    if (body?.action !== 'updateOnly') return;
    for (const input of body.input ?? []) {
      const pair = editor.pairs.get(Number(input['id']));
      if (!inScope(pair)) continue;
      const written = Object.keys(input).map((name) => byMarketoName.get(name)).filter(editableHere).filter((f) => editor.fieldsFor(pair).includes(f));
      if (written.length === 0) continue;
      const field = rng.pick(written);
      editor.editSide(pair, 'MARKETO', field, editor.valueFor(field, round), round, 'person', NEW_FAULTS.editOfFieldBeingWritten);
      shots.edit--;
      fired.editOfFieldBeingWritten++;
      log.raced(NEW_FAULTS.editOfFieldBeingWritten);
      // the smart campaign's "Data Value Changes" trigger calls the flow action
      pending.push(world.marketoWebhook('person-changed', { marketoId: pair.marketoId }));
      return;
    }
  }

  /** kill -9 of the replica whose create Marketo just answered, before it can link the person. */
  function killAfterMarketoCreate(call: MarketoApiCall): void {
    if (shots.kill <= 0 || call.endpoint !== 'leads.sync' || call.phase !== 'after') return;
    const results = Array.isArray(call.result) ? (call.result as { status?: string }[]) : [];
    if (!results.some((r) => r.status === 'created')) return;
    killSender(call.remotePort, 'Marketo created a person for it');
  }

  function killSender(remotePort: number | undefined, what: string): boolean {
    const replica = replicas.ofPort(remotePort);
    if (!replica || !replicas.killNow(replica)) return false;
    shots.kill--;
    fired.killBetweenCreateAndLink++;
    options.say(`  replica ${replica.index} killed (SIGKILL) right after ${what}; restarting it`);
    // as an orchestrator would: the replica comes back while the others (if any) carry on
    pending.push(replica.process.start());
    return true;
  }

  /** An async plug-in step: a moment after the sync's update, another mapped column changes as the sync user. */
  function asyncPluginAfter(table: 'lead' | 'contact', id: string, written: readonly string[]): void {
    const person = editor.personOfRecordNow(id);
    const pair = person === undefined ? undefined : editor.pairs.get(person);
    if (!inScope(pair) || pair.dynamicsId !== id) return;
    const candidates = editor.fieldsFor(pair).filter((f) => editableHere(f) && !written.includes(f.dynamics));
    if (candidates.length === 0) return;
    shots.plugin--;
    const field = rng.pick(candidates);
    const value = editor.valueFor(field, round);
    const delayMs = rng.int(50, 600);
    pending.push(
      new Promise<void>((resolve) =>
        setTimeout(() => {
          if (!dv.get(table, id)) return resolve();
          log.edit({ actor: 'dataverse-plugin', side: 'DYNAMICS', record: { dynamicsId: id }, field: field.canonical, value, race: NEW_FAULTS.asyncPlugin, what: `async plug-in step on ${table} ${id.slice(0, 8)} after the sync's update` });
          applyingPlugin = true;
          try {
            // a step the sync's update triggered: its own update runs one level deeper
            dv.update(table, id, { [field.dynamics]: value }, syncUserId, 2);
            fired.asyncPlugin++;
            log.raced(NEW_FAULTS.asyncPlugin);
          } finally {
            applyingPlugin = false;
          }
          resolve();
        }, delayMs),
      ),
    );
  }

  function listen(): void {
    mkto.onApiCall((call) => {
      // first what the write itself did (an agreement the moment it landed), then a fault's edit after it
      if (call.phase === 'after' && call.endpoint === 'leads.sync') editor.observeMarketoWrite(call.body, call.result);
      pauseReader(call);
      editFieldBeingWritten(call);
      killAfterMarketoCreate(call);
    });
    mkto.onFault((fault) => {
      if (fault.type === 'after-apply') fired.marketoWriteTimedOut++;
    });
    dv.onFault((fault) => {
      if (fault.kind === 'lost_answer') fired[fault.batch ? 'dataverseBatchAnswerLost' : 'dataverseAnswerLost']++;
    });
    dv.onWrite((change) => {
      const table = change.table.logicalName;
      if (change.userId !== syncUserId || (table !== 'lead' && table !== 'contact') || applyingPlugin) return;
      const columns = Object.keys(change.changed);
      if (change.message !== 'Delete') editor.observeDynamicsWrite(change.id, columns.map((c) => byDynamicsName.get(c)?.canonical).filter((c) => c !== undefined));
      if (change.message === 'Create' && shots.kill > 0) {
        const email = change.record?.values['emailaddress1'];
        if (killSender(change.remotePort, `Dataverse created ${table} ${change.id.slice(0, 8)}`) && typeof email === 'string') editor.interruptedCreates.add(email.toLowerCase());
      }
      if (change.message === 'Update' && shots.plugin > 0) asyncPluginAfter(table, change.id, columns);
    });
  }

  /** Arms this round's faults; the vendor ones wait in the simulators for a write to take. */
  function arm(roundNumber: number): string[] {
    round = roundNumber;
    const on = (fault: NewFault) => !options.withhold?.has(fault);
    shots.pause = on('pause') ? rng.int(1, 2) : 0;
    // a lone process restarting refuses every call for tens of seconds: on one replica, every
    // other round, so the races that need a live service (Sync Person) run in the rounds between
    shots.kill = on('killBetweenCreateAndLink') && (replicas.replicas.length > 1 || roundNumber % 2 === 0) ? 1 : 0;
    shots.edit = on('editOfFieldBeingWritten') ? rng.int(1, 2) : 0;
    shots.plugin = on('asyncPlugin') ? rng.int(1, 3) : 0;
    editPhase = rng.pick(['before', 'after'] as const);
    const lostSingle = rng.int(1, 2);
    const lostAnswer = rng.pick(['network', 502, 504] as const);
    const lostBatchAnswer = rng.pick(['network', 504] as const);
    const marketoAnswer = rng.pick(['hang', '604'] as const);
    const marketoTimes = rng.int(1, 2);
    if (on('dataverseAnswerLost')) dv.injectFault({ kind: 'lost_answer', count: lostSingle, answer: lostAnswer, batch: false });
    if (on('dataverseBatchAnswerLost')) dv.injectFault({ kind: 'lost_answer', count: 1, answer: lostBatchAnswer, batch: true });
    if (on('marketoWriteTimedOut')) mkto.injectFault({ type: 'after-apply', answer: marketoAnswer, times: marketoTimes });
    return [
      `${shots.pause} pause(s)`,
      ...(shots.kill ? ['a kill between create and link'] : []),
      `${shots.edit} edit(s) of the field being written (${editPhase} the write)`,
      `${shots.plugin} async plug-in step(s)`,
      ...(on('dataverseAnswerLost') || on('dataverseBatchAnswerLost') ? ['lost Dataverse answers (single, $batch)'] : []),
      ...(on('marketoWriteTimedOut') ? ['a Marketo write that times out after landing'] : []),
    ];
  }

  /** Stops aiming, lets the hooks' own work finish, and brings every replica back. */
  async function disarm(): Promise<void> {
    shots.pause = shots.kill = shots.edit = shots.plugin = 0;
    while (pending.length) await Promise.all(pending.splice(0));
    await replicas.recover();
  }

  return { fired, listen, arm, disarm };
}
