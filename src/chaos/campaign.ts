import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase } from '../db/database.ts';
import { createEditor, type Editor } from './edits.ts';
import { injectFaults, replayDeliveries } from './faults.ts';
import { createIntentLog, prng, sleep, type IntentLog, type Rng } from './model.ts';
import { keepVendorWriteTrail } from './trail.ts';
import { runOracle, type EditClass, type OracleReport, type Violation } from './oracle.ts';
import { createRaces, RACES } from './races.ts';
import { allLinks, checkInvariants, gatherOracleInput, watchSyncCreates } from './verify.ts';
import { createWorkFaults, NEW_FAULTS, noFaultsFired, type NewFault } from './work-faults.ts';
import { startWorld, type World } from './world.ts';

// The fault campaign (issues 7 and 12): seeded rounds of edits on both simulators under injected
// vendor faults, SIGKILLs mid-batch with webhooks failing while the service is down, and the races
// that edit while the engine works on the same person. At the end the intent oracle judges every
// edit against both sides and the activity log; the inbox, duplicates and deletes are checked too.

export interface CampaignOptions {
  seed: number;
  /** rounds of edits; each ends settled */
  rounds: number;
  /** linked pairs created up front, per kind (Dynamics lead, Dynamics contact, Marketo person) */
  pairsPerKind: number;
  /** scripted edits per round (the races come on top) */
  editsPerRound: number;
  /** SIGKILL + restart this many times (in distinct rounds) */
  kills: number;
  /** false: only the scripted, settled edits of issue 7 */
  races?: boolean;
  /** postgresql:// server URL: a fresh database is created on it; unset: PGlite in a temp DATA_DIR */
  databaseUrl?: string | undefined;
  /** service processes on the one database; default 3 on PostgreSQL, always 1 on PGlite */
  replicas?: number | undefined;
  /** issue 24's faults left out of this campaign (default: none) */
  withhold?: readonly NewFault[];
  projectRoot: string;
  /** PATH, HOME etc. for the service process */
  baseEnv: Record<string, string | undefined>;
  log?: (line: string) => void;
}

export interface CampaignFigures {
  seed: number;
  database: 'postgres' | 'pglite';
  replicas: number;
  rounds: number;
  edits: number;
  collisionsScripted: number;
  /** race name -> how often it ran */
  races: Record<string, number>;
  /** the oracle's verdicts per class */
  verdicts: Record<EditClass, number>;
  collisionsGenuine: number;
  collisionsFake: number;
  violations: Violation[];
  events: number;
  eventsDone: number;
  eventsDead: number;
  retries: number;
  kills: number;
  webhooksRefused: number;
  webhooksAborted: number;
  webhooksReplayed: number;
  faultsInjected: number;
  /** issue 24's faults: how many times each took effect */
  faultsFired: Record<NewFault, number>;
  /**
   * Dataverse writes the service sent as single requests (not inside a $batch): a lost single
   * answer can only fire on one of these
   */
  singleDataverseWrites: number;
  sweeps: number;
  duplicates: number;
  lost: number;
  durationSeconds: number;
  problems: string[];
  logFile: string;
  /** every write both simulators took (chaos/trail.ts) */
  trailFile: string;
  /** the oracle's input and verdicts, as JSON */
  oracleFile: string;
}

/** Seconds the service's inbox and record leases last: short, so a long retry outlives them. */
const LEASE_SECONDS = 5;

export function campaignPassed(figures: CampaignFigures): boolean {
  return figures.violations.length === 0 && figures.lost + figures.duplicates === 0 && figures.problems.length === 0;
}

function emptyFigures(options: CampaignOptions): CampaignFigures {
  return {
    seed: options.seed,
    database: options.databaseUrl ? 'postgres' : 'pglite',
    replicas: options.databaseUrl ? (options.replicas ?? 3) : 1,
    rounds: options.rounds,
    edits: 0,
    collisionsScripted: 0,
    races: {},
    verdicts: { 'both-sides': 0, superseded: 0, 'collision-loser': 0, refused: 0, 'out-of-scope': 0, violation: 0 },
    collisionsGenuine: 0,
    collisionsFake: 0,
    violations: [],
    events: 0,
    eventsDone: 0,
    eventsDead: 0,
    retries: 0,
    kills: 0,
    webhooksRefused: 0,
    webhooksAborted: 0,
    webhooksReplayed: 0,
    faultsInjected: 0,
    faultsFired: noFaultsFired(),
    singleDataverseWrites: 0,
    sweeps: 0,
    duplicates: 0,
    lost: 0,
    durationSeconds: 0,
    problems: [],
    logFile: '',
    trailFile: '',
    oracleFile: '',
  };
}

/** Everything one campaign run works with. */
interface Play {
  options: CampaignOptions;
  world: World;
  editor: Editor;
  races: ReturnType<typeof createRaces>;
  workFaults: ReturnType<typeof createWorkFaults>;
  log: IntentLog;
  rng: Rng;
  counters: CampaignFigures & { acceptedEventIds: Set<string> };
  say: (line: string) => void;
}

/** Linked pairs of every kind, settled. */
async function setUp({ options, world, editor, say }: Play): Promise<void> {
  for (let i = 0; i < options.pairsPerKind; i++) {
    editor.createDynamics(0, 'lead');
    editor.createDynamics(0, 'contact');
  }
  for (let i = 0; i < options.pairsPerKind; i++) editor.createMarketo(0, i % 2 === 0 ? 'lead' : 'contact');
  await editor.notifyMarketo();
  await world.settle('set-up');
  await editor.refreshPairs();
  editor.observeAgreements('set-up settled');
  say(`set-up: ${editor.pairs.size} linked pairs`);
}

/** One round: faults, scripted edits, the races, perhaps a SIGKILL; it ends settled and observed. */
async function playRound(play: Play, round: number, kill: boolean): Promise<void> {
  const { options, world, editor, races, workFaults, log, rng, counters, say } = play;
  const deliveriesBefore = world.dv.webhookDeliveries().length;
  const firedBefore = Object.values(workFaults.fired).reduce((a, b) => a + b, 0);
  const faults = [...injectFaults(world, rng, counters), ...workFaults.arm(round)];
  for (let i = 0; i < options.editsPerRound; i++) editor.applyEdit(round);
  let lostCalls = await editor.notifyMarketo();
  await world.dv.flushWebhooks();
  await replayDeliveries(world, rng, deliveriesBefore, counters);
  if (options.races !== false) {
    await races.run(round, options.rounds);
    say(`round ${round}: races done`);
  }
  if (kill) {
    await world.waitForWork(3_000);
    await sleep(rng.int(0, 120));
    // a random replica; on PGlite the only one
    const running = world.replicas.replicas.filter((r) => r.process.running());
    const victim = running.length ? rng.pick(running) : undefined;
    await victim?.process.kill();
    counters.kills++;
    log.raced(RACES.killMidBatch);
    // while it is down: edits keep happening, their webhooks fail at the sender
    const downRound = round + 0.5;
    for (let i = 0; i < Math.max(2, Math.floor(options.editsPerRound / 3)); i++) editor.applyEdit(downRound);
    await editor.notifyMarketo();
    await world.dv.flushWebhooks();
    lostCalls = true;
    await victim?.process.start();
  }
  await workFaults.disarm();
  world.mkto.clearFaults();
  world.dv.clearFaults();
  // a replica frozen or killed, or a delivery Dataverse gave up on: webhooks may be lost
  const fired = Object.values(workFaults.fired).reduce((a, b) => a + b, 0) > firedBefore;
  const failedDeliveries = world.dv.webhookDeliveries().slice(deliveriesBefore).some((d) => d.status === null || d.status < 200 || d.status >= 300);
  lostCalls ||= fired || failedDeliveries;
  await world.settle(`round ${round}`);
  // missed webhooks (downtime, Marketo's timeouts) are the sweep's to find
  if (lostCalls) await world.sweep(`round ${round}`);
  await editor.refreshPairs();
  editor.observeAgreements(`round ${round} settled`);
  say(`round ${round}: ${faults.length} fault(s) [${faults.join(', ')}]${kill ? ', SIGKILL + restart' : ''}${lostCalls ? ', sweep' : ''}; ${counters.edits} edits so far`);
}

/** The end: one sweep, settled; the oracle judges what it reads while the service still runs. */
async function judge({ world, editor, log }: Play, figures: CampaignFigures): Promise<void> {
  await world.sweep('final');
  await editor.refreshPairs();
  const input = await gatherOracleInput(world, editor, log, await allLinks(world));
  const report: OracleReport = runOracle(input);
  figures.verdicts = report.counts;
  figures.violations = report.violations;
  figures.collisionsGenuine = report.collisions.filter((c) => c.genuine).length;
  figures.collisionsFake = report.collisions.filter((c) => !c.genuine).length;
  // everything the oracle saw and decided, for checking a verdict by hand
  figures.oracleFile = join(world.workDir, 'oracle.json');
  const verdicts = report.judgements.map((j) => ({ seq: j.edit.seq, verdict: j.verdict, why: j.why }));
  const collisions = report.collisions.map((c) => ({ id: c.activity.id, person: c.activity.marketoId, field: c.field.field, seq: c.seq, genuine: c.genuine, why: c.why }));
  await writeFile(figures.oracleFile, JSON.stringify({ input, judgements: verdicts, collisions }, null, 1));
}

/** Web API writes outside $batch, from the simulator's per-endpoint counters (only the service calls it over HTTP). */
function singleWritesSent(world: World): number {
  return Object.entries(world.dv.stats())
    .filter(([endpoint]) => /^(POST|PATCH|DELETE) (leads|contacts)/.test(endpoint))
    .reduce((sum, [, counter]) => sum + counter.calls, 0);
}

/** Stops everything; a failed run keeps its database and data directory for inspection. */
async function tearDown(world: World | undefined, figures: CampaignFigures, options: CampaignOptions, stopped: boolean): Promise<void> {
  if (world && !stopped) await world.replicas.killAll().catch(() => undefined);
  await world?.replicas.close().catch(() => undefined);
  await world?.marketoSim.close().catch(() => undefined);
  await world?.dataverseSim.close().catch(() => undefined);
  const passed = campaignPassed(figures);
  if (world?.databaseName && options.databaseUrl) {
    if (passed) {
      const admin = new pg.Client({ connectionString: options.databaseUrl });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${world.databaseName} WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    } else {
      figures.problems.push(`the database ${world.databaseName} is kept for inspection`);
    }
  }
  if (passed && world) await rm(world.dataDir, { recursive: true, force: true }).catch(() => undefined);
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignFigures> {
  const started = Date.now();
  const print = options.log ?? ((line: string) => console.log(line));
  const say = (line: string) => print(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`);
  const rng = prng(options.seed);
  const figures = emptyFigures(options);
  const counters = { ...figures, acceptedEventIds: new Set<string>(), problems: figures.problems };
  const log = createIntentLog();
  let world: World | undefined;
  let stopped = false;
  try {
    world = await startWorld(
      { seed: options.seed, databaseUrl: options.databaseUrl, projectRoot: options.projectRoot, baseEnv: options.baseEnv, leaseSeconds: LEASE_SECONDS, replicas: figures.replicas },
      counters,
    );
    figures.logFile = world.logFile;
    figures.trailFile = keepVendorWriteTrail(world);
    const editor = createEditor(world, rng, log, options.seed, counters);
    const races = createRaces(world, editor, log, rng, { leaseSeconds: LEASE_SECONDS });
    const syncCreates = watchSyncCreates(world);
    const workFaults = createWorkFaults(world, editor, log, rng, { leaseSeconds: LEASE_SECONDS, say, withhold: new Set(options.withhold ?? []) });
    const play: Play = { options, world, editor, races, workFaults, log, rng, counters, say };
    races.listenToPlugin();
    workFaults.listen();
    figures.faultsFired = workFaults.fired;
    await world.replicas.startMissing();
    say(`chaos seed ${options.seed}: ${figures.replicas} replica(s) behind ${world.replicas.frontUrl} (${figures.database}), Marketo ${world.marketoSim.url}, Dataverse ${world.dataverseSim.url}`);
    await setUp(play);
    const killRounds = new Set<number>();
    while (killRounds.size < Math.min(options.kills, options.rounds)) killRounds.add(rng.int(1, options.rounds));
    for (let round = 1; round <= options.rounds; round++) await playRound(play, round, killRounds.has(round));
    await judge(play, figures);
    figures.singleDataverseWrites = singleWritesSent(world);
    await world.replicas.stopAll();
    stopped = true;
    const db = await openDatabase({ url: world.databaseUrl, dataDir: world.dataDir, poolSize: 2 });
    try {
      Object.assign(figures, await checkInvariants(db.prisma, world, editor, syncCreates, counters.acceptedEventIds, figures.problems));
    } finally {
      await db.close();
    }
  } catch (error) {
    figures.problems.push(`campaign aborted: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    figures.lost++;
  } finally {
    for (const key of ['edits', 'collisionsScripted', 'kills', 'webhooksRefused', 'webhooksAborted', 'webhooksReplayed', 'faultsInjected', 'sweeps'] as const) figures[key] = counters[key];
    figures.races = Object.fromEntries(log.races);
    await tearDown(world, figures, options, stopped);
  }
  figures.durationSeconds = Math.round((Date.now() - started) / 100) / 10;
  return figures;
}

/** The campaign's report: races exercised, the oracle's verdicts, every violation in full. */
export function summarise(figures: CampaignFigures): string[] {
  const lines: string[] = [];
  lines.push(
    `seed ${figures.seed} on ${figures.database} with ${figures.replicas} replica(s): ${figures.rounds} rounds, ${figures.edits} edits, ${figures.kills} SIGKILL(s) mid-batch, ${figures.faultsInjected} faults, ${figures.sweeps} sweeps, ${figures.durationSeconds} s`,
  );
  lines.push('races exercised:');
  for (const name of Object.values(RACES)) lines.push(`  ${String(figures.races[name] ?? 0).padStart(4)}  ${name}`);
  lines.push('issue 24 faults fired (counted where they took effect):');
  for (const [key, name] of Object.entries(NEW_FAULTS)) {
    const note = key === 'dataverseAnswerLost' ? ` (the service sent ${figures.singleDataverseWrites} single-request write(s); all others rode in $batch)` : '';
    lines.push(`  ${String(figures.faultsFired[key as NewFault]).padStart(4)}  ${name}${note}`);
  }
  const v = figures.verdicts;
  lines.push(
    `intent oracle: ${v['both-sides']} on both sides, ${v.superseded} superseded, ${v['collision-loser']} genuine-collision losers, ${v.refused} refused by Dynamics (recorded), ${v['out-of-scope']} out of scope, ${v.violation} lost`,
  );
  lines.push(`collisions in the log: ${figures.collisionsGenuine} genuine, ${figures.collisionsFake} fake`);
  lines.push(`inbox: ${figures.events} events (${figures.eventsDone} done, ${figures.eventsDead} dead, ${figures.retries} retries); webhooks: ${figures.webhooksRefused} refused, ${figures.webhooksAborted} aborted, ${figures.webhooksReplayed} replayed; ${figures.duplicates} duplicates, ${figures.lost} lost`);
  lines.push(`violations: ${figures.violations.length}`);
  const byRace = new Map<string, Map<string, number>>();
  for (const violation of figures.violations) {
    for (const race of violation.races.length ? violation.races : ['no race (scripted, settled edits)']) {
      const kinds = byRace.get(race) ?? new Map<string, number>();
      kinds.set(violation.kind, (kinds.get(violation.kind) ?? 0) + 1);
      byRace.set(race, kinds);
    }
  }
  for (const [race, kinds] of byRace) lines.push(`  ${[...kinds].map(([kind, n]) => `${n} ${kind}`).join(', ')} involving: ${race}`);
  for (const violation of figures.violations) lines.push(`VIOLATION [${violation.kind}]${violation.races.length ? ` (races: ${violation.races.join('; ')})` : ''}: ${violation.message}`);
  for (const problem of figures.problems) lines.push(`PROBLEM: ${problem}`);
  lines.push(`service log: ${figures.logFile}`);
  if (figures.oracleFile) lines.push(`oracle input and verdicts: ${figures.oracleFile}`);
  if (figures.trailFile) lines.push(`every vendor write: ${figures.trailFile}`);
  return lines;
}
