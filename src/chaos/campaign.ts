import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from '../db/database.ts';
import { startDataverseSimulator, type DataverseSimulator } from '../sandbox/dynamics/index.ts';
import { startMarketoSimulator, type StartedMarketoSimulator } from '../sandbox/marketo/index.ts';
import { normalise, type ValueType } from '../sync/values.ts';
import { createServiceProcess, freePort, type ServiceProcess } from './service-process.ts';

// The fault campaign (issue 7): a seeded mix of edits on both simulators while faults are injected,
// the service killed with SIGKILL mid-batch and restarted, webhooks arriving while it is down.
// Each round edits only once the previous round settled, so the engine never reads a pair while
// the script is editing it: which edits collided is then known from the script's own edit log,
// and the final values can be checked against the collision rule.

export interface CampaignOptions {
  seed: number;
  /** rounds of edits; each ends settled */
  rounds: number;
  /** linked pairs created up front, per kind (Dynamics lead, Dynamics contact, Marketo person) */
  pairsPerKind: number;
  /** edits per round */
  editsPerRound: number;
  /** SIGKILL + restart this many times (in distinct rounds) */
  kills: number;
  /** postgresql:// server URL: a fresh database is created on it; unset: PGlite in a temp DATA_DIR */
  databaseUrl?: string | undefined;
  projectRoot: string;
  /** PATH, HOME etc. for the service process */
  baseEnv: Record<string, string | undefined>;
  log?: (line: string) => void;
}

export interface CampaignFigures {
  seed: number;
  database: 'postgres' | 'pglite';
  rounds: number;
  edits: number;
  collisionsScripted: number;
  events: number;
  eventsDone: number;
  eventsDead: number;
  retries: number;
  kills: number;
  webhooksRefused: number;
  webhooksAborted: number;
  webhooksReplayed: number;
  faultsInjected: number;
  sweeps: number;
  pairsChecked: number;
  mismatches: number;
  explainedDifferences: number;
  collisionViolations: number;
  duplicates: number;
  lost: number;
  durationSeconds: number;
  problems: string[];
  logFile: string;
}

// ---- the field mapping as SPEC.md lists it (the default mapping) ----

interface FieldSpec {
  canonical: string;
  marketo: string;
  dynamics: string;
  type: ValueType;
  leadOnly?: boolean;
}

const fields: FieldSpec[] = [
  { canonical: 'email', marketo: 'email', dynamics: 'emailaddress1', type: 'email' },
  { canonical: 'firstName', marketo: 'firstName', dynamics: 'firstname', type: 'string' },
  { canonical: 'lastName', marketo: 'lastName', dynamics: 'lastname', type: 'string' },
  { canonical: 'title', marketo: 'title', dynamics: 'jobtitle', type: 'string' },
  { canonical: 'phone', marketo: 'phone', dynamics: 'telephone1', type: 'string' },
  { canonical: 'mobilePhone', marketo: 'mobilePhone', dynamics: 'mobilephone', type: 'string' },
  { canonical: 'company', marketo: 'company', dynamics: 'companyname', type: 'string', leadOnly: true },
  { canonical: 'street', marketo: 'address', dynamics: 'address1_line1', type: 'string' },
  { canonical: 'city', marketo: 'city', dynamics: 'address1_city', type: 'string' },
  { canonical: 'state', marketo: 'state', dynamics: 'address1_stateorprovince', type: 'string' },
  { canonical: 'postalCode', marketo: 'postalCode', dynamics: 'address1_postalcode', type: 'string' },
  { canonical: 'country', marketo: 'country', dynamics: 'address1_country', type: 'string' },
  { canonical: 'unsubscribed', marketo: 'unsubscribed', dynamics: 'donotbulkemail', type: 'boolean' },
];
const editable = fields.filter((f) => f.canonical !== 'email');
const fieldOf = (canonical: string) => fields.find((f) => f.canonical === canonical)!;
/** a title Dynamics refuses on leads (a business rule registered by the campaign) */
const REJECTED_PREFIX = 'REJECT';

// ---- seeded randomness (mulberry32) ----

function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
    chance: (p: number) => next() < p,
  };
}

// ---- the script's model of the pairs ----

type Entity = 'lead' | 'contact';
type Side = 'marketo' | 'dynamics';

interface Pair {
  marketoId: number;
  entity: Entity;
  dynamicsId: string;
  email: string;
  state: 'active' | 'deleted_in_dynamics' | 'deleted_in_marketo';
  filteredOut: boolean;
  /** qualified this round: the link moves to the new contact (learnt after the round settles) */
  moving: boolean;
  /** the last edit of each canonical field: the round and the value per side */
  lastEdits: Map<string, { round: number; entity: Entity; marketo?: unknown; dynamics?: unknown }>;
  /** fields whose last value Dynamics was expected to refuse */
  rejected: Set<string>;
}

interface EditLogEntry {
  round: number;
  kind: string;
  marketoId?: number;
  dynamicsId?: string;
  side?: Side;
  field?: string;
  value?: unknown;
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignFigures> {
  const started = Date.now();
  const log = options.log ?? ((line: string) => console.log(line));
  const rng = prng(options.seed);
  const problems: string[] = [];
  const figures: CampaignFigures = {
    seed: options.seed,
    database: options.databaseUrl ? 'postgres' : 'pglite',
    rounds: options.rounds,
    edits: 0,
    collisionsScripted: 0,
    events: 0,
    eventsDone: 0,
    eventsDead: 0,
    retries: 0,
    kills: 0,
    webhooksRefused: 0,
    webhooksAborted: 0,
    webhooksReplayed: 0,
    faultsInjected: 0,
    sweeps: 0,
    pairsChecked: 0,
    mismatches: 0,
    explainedDifferences: 0,
    collisionViolations: 0,
    duplicates: 0,
    lost: 0,
    durationSeconds: 0,
    problems,
    logFile: '',
  };
  const editLog: EditLogEntry[] = [];
  const acceptedEventIds = new Set<string>();
  const pairs = new Map<number, Pair>();
  /** Marketo persons created by the script whose link is not known yet */
  const unresolved = new Map<number, { email: string; entity: Entity }>();
  /** Dynamics records created by the script, to find their Marketo person */
  const unresolvedDynamics = new Map<string, { email: string; entity: Entity }>();
  let emailCounter = 0;
  const newEmail = (kind: string) => `chaos.${options.seed}.${kind}.${++emailCounter}@example.com`;

  // ---- the world: two simulators here, a database, the service as a child process ----
  const workDir = await mkdtemp(join(tmpdir(), `mds-chaos-${options.seed}-`));
  figures.logFile = join(workDir, 'service.log');
  const marketoSim: StartedMarketoSimulator = await startMarketoSimulator({
    seed: options.seed,
    limits: { callsPerWindow: 100, windowMs: 20_000 },
    webhookTimeoutMs: 30_000,
  });
  const dataverseSim: DataverseSimulator = await startDataverseSimulator({ webhookRetryDelayMs: 200, webhookTimeoutMs: 10_000 });
  const mkto = marketoSim.admin;
  const dv = dataverseSim.admin;
  dv.addBusinessRule({ table: 'lead', column: 'jobtitle', kind: 'pattern', pattern: `^(?!${REJECTED_PREFIX}).*$`, message: 'Job title must not start with REJECT (campaign rule)' });

  let databaseName: string | undefined;
  let databaseUrl: string | undefined;
  if (options.databaseUrl) {
    databaseName = `mds_chaos_${options.seed}_${randomBytes(3).toString('hex')}`;
    const admin = new pg.Client({ connectionString: options.databaseUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${databaseName}`);
    await admin.end();
    const parsed = new URL(options.databaseUrl);
    parsed.pathname = `/${databaseName}`;
    databaseUrl = parsed.toString();
  }
  const dataDir = join(workDir, 'data');
  const secrets = {
    marketo: randomBytes(24).toString('base64url'),
    dynamics: randomBytes(24).toString('base64url'),
    graphql: randomBytes(24).toString('base64url'),
  };
  const port = await freePort();
  const service: ServiceProcess = createServiceProcess({
    projectRoot: options.projectRoot,
    baseEnv: options.baseEnv,
    port,
    logFile: figures.logFile,
    env: {
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { DATA_DIR: dataDir }),
      MARKETO_BASE_URL: marketoSim.url,
      MARKETO_CLIENT_ID: marketoSim.clientId,
      MARKETO_CLIENT_SECRET: marketoSim.clientSecret,
      MARKETO_CALLS_PER_20S: '100',
      DYNAMICS_URL: dataverseSim.url,
      DYNAMICS_TOKEN_URL: dataverseSim.tokenUrl,
      DYNAMICS_TENANT_ID: dataverseSim.tenantId,
      DYNAMICS_CLIENT_ID: dataverseSim.clientId,
      DYNAMICS_CLIENT_SECRET: dataverseSim.clientSecret,
      MARKETO_WEBHOOK_SECRET: secrets.marketo,
      DYNAMICS_WEBHOOK_SECRET: secrets.dynamics,
      GRAPHQL_API_TOKEN: secrets.graphql,
      // the sweep runs when the script asks (after downtime and lost calls, and at the end)
      SYNC_SWEEP_CRON: '0 0 1 1 *',
      SYNC_FULL_CRON: '0 0 1 1 *',
      // faults must be felt within a campaign, not after the vendors' real timeouts
      MARKETO_TIMEOUT_MS: '1500',
      DYNAMICS_TIMEOUT_MS: '1500',
      INBOX_LEASE_SECONDS: '5',
      INBOX_POLL_MS: '50',
      INBOX_MAX_ATTEMPTS: '10',
      SYNC_RECORD_LOCK_SECONDS: '8',
      SHUTDOWN_TIMEOUT_MS: '5000',
    },
  });
  dv.registerWebhook({
    url: `${service.url}/webhooks/dynamics`,
    authType: 'WebhookKey',
    authValue: secrets.dynamics,
    entities: ['lead', 'contact'],
    messages: ['Create', 'Update', 'Delete'],
    postImage: true,
  });

  // ---- talking to the service ----
  async function graphql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const response = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secrets.graphql}` },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
    if (!body.data || body.errors?.length) throw new Error(`GraphQL failed: ${JSON.stringify(body.errors)}`);
    return body.data;
  }

  /** A Marketo flow-action call; `abortAfterMs` plays Marketo giving up before the answer. */
  async function marketoWebhook(path: 'person-changed' | 'sync-person', body: unknown, abortAfterMs?: number): Promise<{ status: number; body: Record<string, unknown> } | 'refused' | 'aborted'> {
    try {
      const response = await fetch(`${service.url}/webhooks/marketo/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-webhook-secret': secrets.marketo },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(abortAfterMs ?? 30_000),
      });
      const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      if (response.status >= 200 && response.status < 300 && typeof json['eventId'] === 'string') acceptedEventIds.add(json['eventId']);
      return { status: response.status, body: json };
    } catch (error) {
      if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
        figures.webhooksAborted++;
        return 'aborted';
      }
      figures.webhooksRefused++;
      return 'refused';
    }
  }

  async function backlog(): Promise<{ pending: number; processing: number; failed: number; dead: number }> {
    const data = await graphql<{ syncStatus: { backlog: { pending: number; processing: number; failed: number; dead: number } } }>(
      '{ syncStatus { backlog { pending processing failed dead } } }',
    );
    return data.syncStatus.backlog;
  }

  async function settle(label: string, timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let quiet = 0;
    while (Date.now() < deadline) {
      await dv.flushWebhooks();
      const b = await backlog();
      quiet = b.pending + b.processing + b.failed === 0 ? quiet + 1 : 0;
      if (quiet >= 3) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${label}: the inbox did not settle within ${timeoutMs / 1000} s (${JSON.stringify(await backlog())}); see ${figures.logFile}`);
  }

  async function sweep(label: string): Promise<void> {
    const requested = await graphql<{ requestSweep: { ok: boolean; runId: string | null; message: string; error: string | null } }>(
      'mutation { requestSweep { ok runId message error } }',
    );
    if (!requested.requestSweep.ok || !requested.requestSweep.runId) throw new Error(`${label}: the sweep did not start: ${JSON.stringify(requested.requestSweep)}`);
    figures.sweeps++;
    const runId = requested.requestSweep.runId;
    const deadline = Date.now() + 240_000;
    for (;;) {
      const runs = await graphql<{ syncRuns: { edges: { node: { id: string; status: string; finishedAt: string | null; error: string | null } }[] } }>(
        '{ syncRuns(first: 5) { edges { node { id status finishedAt error } } } }',
      );
      const run = runs.syncRuns.edges.map((e) => e.node).find((r) => r.id === runId);
      if (run?.finishedAt) {
        if (run.status !== 'SUCCEEDED') problems.push(`${label}: sweep ${runId} ended ${run.status}: ${run.error ?? ''}`);
        break;
      }
      if (Date.now() > deadline) throw new Error(`${label}: sweep ${runId} did not finish in 240 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await settle(`${label} (after the sweep)`);
  }

  async function linkOf(marketoId: number): Promise<{ dynamicsEntity: string; dynamicsId: string; status: string } | null> {
    const data = await graphql<{ link: { dynamicsEntity: string; dynamicsId: string; status: string } | null }>(
      'query($id: ID) { link(marketoId: $id) { dynamicsEntity dynamicsId status } }',
      { id: String(marketoId) },
    );
    return data.link;
  }

  function newPair(marketoId: number, entity: Entity, dynamicsId: string, email: string): Pair {
    return { marketoId, entity, dynamicsId, email, state: 'active', filteredOut: false, moving: false, lastEdits: new Map(), rejected: new Set() };
  }

  /** Learns the links of persons and records the script created, and moved links (qualification). */
  async function refreshPairs(): Promise<void> {
    for (const [marketoId, info] of unresolved) {
      const link = await linkOf(marketoId);
      if (!link) continue;
      unresolved.delete(marketoId);
      pairs.set(marketoId, newPair(marketoId, link.dynamicsEntity === 'CONTACT' ? 'contact' : 'lead', link.dynamicsId, info.email));
    }
    for (const [dynamicsId, info] of unresolvedDynamics) {
      const persons = mkto.listLeads({ limit: 100_000 }).filter((p) => typeof p['email'] === 'string' && p['email'].toLowerCase() === info.email.toLowerCase());
      for (const person of persons) {
        const link = await linkOf(person.id);
        if (link?.dynamicsId === dynamicsId) {
          unresolvedDynamics.delete(dynamicsId);
          const existing = pairs.get(person.id);
          if (existing) {
            existing.dynamicsId = dynamicsId;
            existing.entity = info.entity;
          } else {
            pairs.set(person.id, newPair(person.id, info.entity, dynamicsId, info.email));
          }
        }
      }
    }
    for (const pair of pairs.values()) {
      if (pair.state !== 'active') continue;
      const link = await linkOf(pair.marketoId);
      if (link && link.dynamicsId !== pair.dynamicsId && link.status === 'ACTIVE') {
        pair.dynamicsId = link.dynamicsId;
        pair.entity = link.dynamicsEntity === 'CONTACT' ? 'contact' : 'lead';
      }
      if (pair.moving && link?.dynamicsEntity === 'CONTACT') pair.moving = false;
    }
  }

  // ---- edits ----
  const roundNotifications = { marketo: new Set<number>() };
  /** Sync Person calls wait until every edit of the round is made (no I/O between edits) */
  const deferredCalls: (() => Promise<void>)[] = [];

  function valueFor(field: FieldSpec, round: number): unknown {
    if (field.type === 'boolean') return rng.chance(0.5);
    if (field.canonical === 'postalCode') return String(rng.int(10000, 99999));
    if (field.canonical === 'phone' || field.canonical === 'mobilePhone') return `+1 555 ${rng.int(1000, 9999)}`;
    return `${field.canonical} r${round} ${rng.int(1, 99_999)}`;
  }

  function editSide(pair: Pair, side: Side, field: FieldSpec, value: unknown, round: number): void {
    if (side === 'marketo') {
      mkto.updateLead(pair.marketoId, { [field.marketo]: value });
      roundNotifications.marketo.add(pair.marketoId);
    } else {
      dv.update(pair.entity, pair.dynamicsId, { [field.dynamics]: value });
    }
    const last = pair.lastEdits.get(field.canonical);
    if (last && last.round === round) last[side] = value;
    else pair.lastEdits.set(field.canonical, { round, entity: pair.entity, [side]: value });
    pair.rejected.delete(field.canonical);
    editLog.push({ round, kind: 'update', marketoId: pair.marketoId, dynamicsId: pair.dynamicsId, side, field: field.canonical, value });
    figures.edits++;
  }

  const activePairs = () => [...pairs.values()].filter((p) => p.state === 'active');
  const fieldsFor = (pair: Pair) => editable.filter((f) => !f.leadOnly || pair.entity === 'lead');
  const touchedIn = (p: Pair, round: number) => [...p.lastEdits.values()].some((e) => e.round === round);

  function createDynamics(round: number, entity: Entity, email = newEmail(entity)): void {
    const created = dv.create(entity, { firstname: `Dyn${round}`, lastname: `Created ${emailCounter}`, emailaddress1: email, jobtitle: 'Analyst', ...(entity === 'lead' ? { companyname: 'Chaos Ltd' } : {}) });
    unresolvedDynamics.set(String(created[`${entity}id`]).toLowerCase(), { email, entity });
    editLog.push({ round, kind: `create ${entity} in Dynamics`, dynamicsId: String(created[`${entity}id`]) });
    figures.edits++;
  }

  function createMarketo(round: number, entity: Entity): void {
    const email = newEmail(`mkto-${entity}`);
    const person = mkto.createLead({ email, firstName: `Mkto${round}`, lastName: `Created ${emailCounter}`, title: 'Marketer', company: 'Chaos Ltd' });
    unresolved.set(person.id, { email, entity });
    editLog.push({ round, kind: `create person in Marketo, Sync Person as ${entity}`, marketoId: person.id });
    figures.edits++;
    deferredCalls.push(async () => {
      const answer = await marketoWebhook('sync-person', { marketoId: person.id, syncAs: entity });
      if (typeof answer === 'object' && answer.status >= 500) problems.push(`sync-person ${person.id} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    });
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
        mkto.createLead({ email: email.toUpperCase(), firstName: 'Match', lastName: `Existing ${emailCounter}` });
        figures.edits++;
        createDynamics(round, 'contact', email);
        return;
      }
    }
    if (!pair) return;
    const touched = (p: Pair) => touchedIn(p, round);
    switch (kind) {
      case 'single': {
        const side: Side = pair.filteredOut ? 'dynamics' : rng.pick(['marketo', 'dynamics'] as const);
        const field = rng.pick(fieldsFor(pair));
        editSide(pair, side, field, valueFor(field, round), round);
        return;
      }
      case 'same-field': {
        if (pair.filteredOut) return;
        const field = rng.pick(fieldsFor(pair));
        editSide(pair, 'marketo', field, valueFor(field, round), round);
        editSide(pair, 'dynamics', field, valueFor(field, round), round);
        figures.collisionsScripted++;
        return;
      }
      case 'different-fields': {
        if (pair.filteredOut) return;
        const available = fieldsFor(pair);
        const a = rng.pick(available);
        const b = rng.pick(available.filter((f) => f !== a));
        editSide(pair, 'marketo', a, valueFor(a, round), round);
        editSide(pair, 'dynamics', b, valueFor(b, round), round);
        return;
      }
      case 'qualify': {
        if (pair.entity !== 'lead' || pair.filteredOut || touched(pair)) return;
        const lead = dv.get('lead', pair.dynamicsId);
        if (!lead || lead['statecode'] !== 0) return;
        dv.qualifyLead(pair.dynamicsId);
        // the link moves to the new contact; its id is learnt after the round settles
        pair.entity = 'contact';
        pair.moving = true;
        pair.lastEdits.delete('company');
        editLog.push({ round, kind: 'qualify lead', marketoId: pair.marketoId, dynamicsId: pair.dynamicsId });
        figures.edits++;
        return;
      }
      case 'delete-dynamics': {
        if (!rng.chance(0.4) || touched(pair)) return;
        dv.delete(pair.entity, pair.dynamicsId);
        pair.state = 'deleted_in_dynamics';
        editLog.push({ round, kind: 'delete in Dynamics', marketoId: pair.marketoId, dynamicsId: pair.dynamicsId });
        figures.edits++;
        return;
      }
      case 'delete-marketo': {
        if (!rng.chance(0.4) || touched(pair)) return;
        mkto.deleteLead(pair.marketoId);
        pair.state = 'deleted_in_marketo';
        roundNotifications.marketo.add(pair.marketoId);
        editLog.push({ round, kind: 'delete in Marketo', marketoId: pair.marketoId, dynamicsId: pair.dynamicsId });
        figures.edits++;
        return;
      }
      case 'filter': {
        if (touched(pair)) return;
        // Yes -> No stops updates; No -> Yes syncs the record at once (with what Dynamics changed meanwhile)
        pair.filteredOut = !pair.filteredOut;
        dv.update(pair.entity, pair.dynamicsId, { new_synctomkto: !pair.filteredOut });
        editLog.push({ round, kind: pair.filteredOut ? 'sync filter -> No' : 'sync filter -> Yes', marketoId: pair.marketoId, dynamicsId: pair.dynamicsId });
        figures.edits++;
        if (pair.filteredOut) {
          // an edit Marketo must not receive while the filter says No
          const field = rng.pick(fieldsFor(pair));
          editSide(pair, 'dynamics', field, valueFor(field, round), round);
        }
        return;
      }
      case 'validation': {
        if (pair.entity !== 'lead' || pair.filteredOut) return;
        const field = fieldOf('title');
        editSide(pair, 'marketo', field, `${REJECTED_PREFIX} r${round} ${rng.int(1, 999)}`, round);
        pair.rejected.add('title');
        return;
      }
    }
  }

  // ---- faults ----
  function injectFaults(): string[] {
    const injected: string[] = [];
    const add = (label: string, apply: () => void) => {
      apply();
      injected.push(label);
      figures.faultsInjected++;
    };
    if (rng.chance(0.6)) add('Marketo 606 storm', () => mkto.injectFault({ type: 'code', code: '606', times: rng.int(3, 12) }));
    if (rng.chance(0.5)) add('Marketo 615 storm', () => mkto.injectFault({ type: 'code', code: '615', times: rng.int(2, 8) }));
    if (rng.chance(0.4)) add('Marketo 5xx burst', () => mkto.injectFault({ type: 'http', status: rng.pick([500, 502, 503]), times: rng.int(2, 6) }));
    if (rng.chance(0.3)) add('Marketo hangs past the client timeout', () => mkto.injectFault({ type: 'hang', times: rng.int(1, 2) }));
    if (rng.chance(0.4)) add('Marketo tokens revoked', () => mkto.revokeTokens());
    if (rng.chance(0.6)) add('Dataverse 429 storm with Retry-After', () => dv.injectFault({ kind: 'rate_limit', count: rng.int(2, 8), retryAfterSeconds: rng.int(1, 2) }));
    if (rng.chance(0.5)) add('Dataverse 5xx burst', () => dv.injectFault({ kind: 'server_error', count: rng.int(2, 6), status: rng.pick([500, 502, 503, 504] as const) }));
    if (rng.chance(0.3)) add('Dataverse slower than the client timeout', () => dv.injectFault({ kind: 'latency', count: rng.int(1, 2), ms: 2_500 }));
    if (rng.chance(0.3)) add('Dataverse network drop', () => dv.injectFault({ kind: 'network', count: rng.int(1, 3) }));
    if (rng.chance(0.4)) add('Dataverse access tokens expired', () => dv.expireAccessTokens());
    return injected;
  }

  /** Marketo's flow action for each edited person; some time out on Marketo's side, some are sent twice. */
  async function notifyMarketo(): Promise<boolean> {
    let lost = false;
    const calls = deferredCalls.splice(0);
    await Promise.all(calls.map((call) => call()));
    const ids = [...roundNotifications.marketo];
    roundNotifications.marketo.clear();
    await Promise.all(
      ids.map(async (marketoId) => {
        const abort = rng.chance(0.15);
        const answer = await marketoWebhook('person-changed', { marketoId }, abort ? rng.int(1, 5) : undefined);
        if (answer === 'aborted' || answer === 'refused') lost = true;
        else if (answer.status >= 500) problems.push(`person-changed ${marketoId} answered ${answer.status}`);
        if (rng.chance(0.1)) await marketoWebhook('person-changed', { marketoId });
      }),
    );
    return lost;
  }

  /** Dataverse's own retry and a replay: the same delivery sent again must change nothing. */
  async function replayDeliveries(since: number): Promise<void> {
    const deliveries = dv.webhookDeliveries().slice(since).filter((d) => d.status !== null && d.status >= 200 && d.status < 300);
    for (const delivery of deliveries) {
      if (!rng.chance(0.25)) continue;
      try {
        const response = await fetch(delivery.url, { method: 'POST', headers: delivery.headers, body: delivery.body, signal: AbortSignal.timeout(10_000) });
        const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
        figures.webhooksReplayed++;
        if (response.status >= 500) problems.push(`a replayed Dataverse delivery answered ${response.status}`);
        else if (typeof json['eventId'] === 'string') acceptedEventIds.add(json['eventId']);
        if (json['status'] === 'queued') problems.push(`a replayed Dataverse delivery was queued again instead of recognised as a duplicate (${delivery.entity} ${delivery.id})`);
      } catch {
        figures.webhooksRefused++;
      }
    }
  }

  async function waitForWork(maxMs: number): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      const b = await backlog().catch(() => undefined);
      if (b && b.processing > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  // ---- the checks ----
  async function verify(prisma: Database['prisma']): Promise<void> {
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

    // duplicates: persons by email, Dynamics records by email per table, links per record
    const dupes = (keys: string[]) => {
      const seen = new Map<string, number>();
      for (const key of keys) seen.set(key, (seen.get(key) ?? 0) + 1);
      return [...seen].filter(([, n]) => n > 1);
    };
    const emailsOf = (rows: Record<string, unknown>[], key: string) => rows.map((r) => (typeof r[key] === 'string' ? r[key].toLowerCase() : '')).filter((e) => e !== '');
    const groups: [string, [string, number][]][] = [
      ['Marketo person', dupes(emailsOf(mkto.listLeads({ limit: 1_000_000 }), 'email'))],
      ['Dynamics lead', dupes(emailsOf(dv.list('lead'), 'emailaddress1'))],
      ['Dynamics contact', dupes(emailsOf(dv.list('contact'), 'emailaddress1'))],
    ];
    const links = await prisma.syncLink.findMany();
    groups.push(['active links to Dynamics record', dupes(links.filter((l) => l.status === 'ACTIVE').map((l) => l.dynamicsId))]);
    groups.push(['active links of person', dupes(links.filter((l) => l.status === 'ACTIVE').map((l) => String(l.marketoId)))]);
    for (const [what, list] of groups) {
      for (const [key, n] of list) {
        figures.duplicates++;
        problems.push(`${n} ${what}s share ${key}`);
      }
    }

    // every active pair: equal on every synced field, or an activity says why not
    const explainers = await prisma.activity.findMany({
      where: { type: { in: ['VALIDATION_REJECTED', 'FIELD_SKIPPED'] } },
      select: { linkId: true, marketoId: true, type: true, message: true, fields: true },
    });
    for (const link of links) {
      if (link.status !== 'ACTIVE') continue;
      const person = mkto.getLead(link.marketoId);
      const entity: Entity = link.dynamicsEntity === 'CONTACT' ? 'contact' : 'lead';
      const record = dv.get(entity, link.dynamicsId);
      if (!person || !record) {
        figures.mismatches++;
        problems.push(`link ${link.id} is ACTIVE but ${!person ? `person ${link.marketoId}` : `${entity} ${link.dynamicsId}`} does not exist`);
        continue;
      }
      if (record['new_synctomkto'] === false) continue; // filtered out: updates stop by design
      figures.pairsChecked++;
      const pair = pairs.get(link.marketoId);
      for (const field of fields) {
        if (field.leadOnly && entity !== 'lead') continue;
        const m = normalise(person[field.marketo], field.type);
        const d = normalise(record[field.dynamics], field.type);
        const equal = field.type === 'email' && typeof m === 'string' && typeof d === 'string' ? m.toLowerCase() === d.toLowerCase() : m === d;
        const explained = explainers.some(
          (a) => (a.linkId === link.id || a.marketoId === link.marketoId) && JSON.stringify([a.fields, a.message]).includes(field.canonical),
        );
        if (!equal) {
          if (explained) figures.explainedDifferences++;
          else {
            figures.mismatches++;
            problems.push(`person ${link.marketoId} / ${entity} ${link.dynamicsId} differ on ${field.canonical}: Marketo ${JSON.stringify(m)}, Dynamics ${JSON.stringify(d)}`);
          }
          continue;
        }
        // the collision rule and "nothing lost", against the script's edit log
        const last = pair?.lastEdits.get(field.canonical);
        if (!pair || !last || pair.rejected.has(field.canonical)) continue;
        const both = 'marketo' in last && 'dynamics' in last;
        // the rule of the entity the person was linked to when the edits collided (a lead may be qualified later)
        const winner: Side = both ? (last.entity === 'lead' ? 'marketo' : 'dynamics') : 'marketo' in last ? 'marketo' : 'dynamics';
        const expected = normalise(last[winner], field.type);
        if (m !== expected) {
          if (both) figures.collisionViolations++;
          else figures.lost++;
          problems.push(
            `person ${link.marketoId} (${last.entity} then, ${entity} now) ${field.canonical}: ${both ? `collision in round ${last.round} should be won by ${winner}` : `the ${winner} edit of round ${last.round} is lost`}: expected ${JSON.stringify(expected)}, both sides have ${JSON.stringify(m)}`,
          );
          const history = await prisma.activity.findMany({
            where: { marketoId: link.marketoId },
            orderBy: { occurredAt: 'asc' },
            select: { type: true, dynamicsEntity: true, dynamicsId: true, fields: true, occurredAt: true },
          });
          const about = (f: unknown) => (f as { field?: string }).field === field.canonical;
          problems.push(
            `  history: ${history
              .map((a) => `${a.occurredAt.toISOString().slice(11, 23)} ${a.type} ${a.dynamicsEntity ?? '-'} ${a.dynamicsId?.slice(0, 8) ?? ''} ${Array.isArray(a.fields) ? JSON.stringify(a.fields.filter(about)) : ''}`)
              .join(' | ')}`,
          );
          problems.push(`  edits: ${JSON.stringify(editLog.filter((e) => e.marketoId === link.marketoId && (e.field === field.canonical || !e.field)))}`);
        }
      }
    }
    // deletes: a Dynamics delete never deletes the person; a Marketo delete never deletes CRM data
    for (const pair of pairs.values()) {
      if (pair.state === 'deleted_in_dynamics' && !mkto.getLead(pair.marketoId)) {
        figures.lost++;
        problems.push(`person ${pair.marketoId} was deleted although only its Dynamics ${pair.entity} was`);
      }
      if (pair.state === 'deleted_in_marketo' && !dv.get(pair.entity, pair.dynamicsId)) {
        figures.lost++;
        problems.push(`${pair.entity} ${pair.dynamicsId} was deleted although only its Marketo person was`);
      }
    }
  }

  let stopped = false;
  try {
    await service.start();
    log(`chaos seed ${options.seed}: service on ${service.url} (${figures.database}), Marketo ${marketoSim.url}, Dataverse ${dataverseSim.url}`);

    // ---- set-up: linked pairs of every kind ----
    for (let i = 0; i < options.pairsPerKind; i++) {
      createDynamics(0, 'lead');
      createDynamics(0, 'contact');
    }
    for (let i = 0; i < options.pairsPerKind; i++) createMarketo(0, i % 2 === 0 ? 'lead' : 'contact');
    await notifyMarketo();
    await settle('set-up');
    await refreshPairs();
    log(`set-up: ${pairs.size} linked pairs`);

    const killRounds = new Set<number>();
    while (killRounds.size < Math.min(options.kills, options.rounds)) killRounds.add(rng.int(1, options.rounds));

    for (let round = 1; round <= options.rounds; round++) {
      const deliveriesBefore = dv.webhookDeliveries().length;
      const faults = injectFaults();
      for (let i = 0; i < options.editsPerRound; i++) applyEdit(round);
      let lostCalls = await notifyMarketo();
      await dv.flushWebhooks();
      await replayDeliveries(deliveriesBefore);

      let killed = false;
      if (killRounds.has(round)) {
        await waitForWork(3_000);
        await new Promise((resolve) => setTimeout(resolve, rng.int(0, 120)));
        await service.kill();
        figures.kills++;
        killed = true;
        // while it is down: edits keep happening, their webhooks fail at the sender
        const downRound = round + 0.5;
        for (let i = 0; i < Math.max(2, Math.floor(options.editsPerRound / 3)); i++) applyEdit(downRound);
        await notifyMarketo();
        await dv.flushWebhooks();
        lostCalls = true;
        await service.start();
      }
      mkto.clearFaults();
      dv.clearFaults();
      await settle(`round ${round}`);
      // missed webhooks (downtime, Marketo's timeouts) are the sweep's to find
      if (lostCalls) await sweep(`round ${round}`);
      await refreshPairs();
      log(`round ${round}: ${faults.length} fault(s) [${faults.join(', ')}]${killed ? ', SIGKILL + restart' : ''}${lostCalls ? ', sweep' : ''}; ${figures.edits} edits so far`);
    }

    // ---- the end: one sweep, settled, then the service stops and the database is read ----
    await sweep('final');
    await refreshPairs();
    await service.stop();
    stopped = true;

    const db = await openDatabase({ url: databaseUrl, dataDir, poolSize: 2 });
    try {
      await verify(db.prisma);
    } finally {
      await db.close();
    }
  } catch (error) {
    problems.push(`campaign aborted: ${error instanceof Error ? error.message : String(error)}`);
    figures.lost++;
  } finally {
    if (!stopped) await service.kill().catch(() => undefined);
    await marketoSim.close().catch(() => undefined);
    await dataverseSim.close().catch(() => undefined);
    const passed = figures.lost + figures.mismatches + figures.duplicates + figures.collisionViolations === 0 && problems.length === 0;
    if (databaseName && options.databaseUrl) {
      if (passed) {
        const admin = new pg.Client({ connectionString: options.databaseUrl });
        await admin.connect();
        await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).catch(() => undefined);
        await admin.end();
      } else {
        problems.push(`the database ${databaseName} is kept for inspection`);
      }
    }
    if (passed) await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
  }
  figures.durationSeconds = Math.round((Date.now() - started) / 100) / 10;
  return figures;
}
