import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../src/config.ts';
import { startService } from '../src/main.ts';

// `npm run demo`: a narrated scenario, end to end, against a sandbox service. Everything goes
// through HTTP, exactly as an admin would drive it: Marketo's webhook calls (fired by the Marketo
// simulator from the webhook definition the README describes), edits through the simulators'
// admin APIs, and the GraphQL API. Exits 0 only when every step's expectation held.
//
// `runDemo()` also runs against a service someone else started (the newcomer test runs it
// against `npm start`).

export interface DemoTarget {
  /** the service, e.g. http://127.0.0.1:3000 */
  url: string;
  graphqlToken: string;
  marketoWebhookSecret: string;
  /** the Marketo simulator (admin API under /__admin) */
  marketoUrl: string;
  /** the Dataverse simulator (admin API under /__admin) */
  dataverseUrl: string;
}

export interface DemoStep {
  title: string;
  ok: boolean;
  lines: string[];
}

type Json = Record<string, unknown>;
type ActivityNode = { type: string; message: string | null; fields: { field: string; oldValue: unknown; newValue: unknown; side: string | null; losingValue: unknown; winner: string | null }[] };

class Expectation extends Error {}

export async function runDemo(target: DemoTarget, options: { print?: (line: string) => void; timeoutMs?: number } = {}): Promise<{ ok: boolean; steps: DemoStep[] }> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const timeoutMs = options.timeoutMs ?? 30_000;
  const run = Date.now().toString(36);
  const steps: DemoStep[] = [];

  async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Json }> {
    const response = await fetch(url, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let json: Json = {};
    try {
      json = text ? (JSON.parse(text) as Json) : {};
    } catch {
      json = { text };
    }
    return { status: response.status, json };
  }
  async function ok(method: string, url: string, body?: unknown): Promise<Json> {
    const { status, json } = await call(method, url, body);
    if (status >= 300) throw new Expectation(`${method} ${url} answered ${status}: ${JSON.stringify(json)}`);
    return json;
  }
  async function graphql<T>(query: string, variables: Json = {}): Promise<T> {
    const { status, json } = await call('POST', `${target.url}/graphql`, { query, variables }, { authorization: `Bearer ${target.graphqlToken}` });
    if (status !== 200 || json['errors']) throw new Expectation(`GraphQL answered ${status}: ${JSON.stringify(json['errors'] ?? json)}`);
    return json['data'] as T;
  }
  const marketoPerson = (id: number) => ok('GET', `${target.marketoUrl}/__admin/leads/${id}`);
  const dynamicsRecord = (entity: 'lead' | 'contact', id: string) => ok('GET', `${target.dataverseUrl}/__admin/records/${entity}/${id}`);
  async function activities(marketoId: number, first = 10): Promise<ActivityNode[]> {
    const data = await graphql<{ activities: { edges: { node: ActivityNode }[] } }>(
      `query ($marketoId: ID!, $first: Int) { activities(marketoId: $marketoId, first: $first) {
         edges { node { type message fields { field oldValue newValue side losingValue winner } } } } }`,
      { marketoId: String(marketoId), first },
    );
    return data.activities.edges.map((e) => e.node);
  }
  async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Expectation(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
  }
  /** the inbox has nothing pending or in progress (twice in a row: an echo may still be on its way) */
  const settled = () =>
    waitFor('the inbox to settle', async () => {
      for (let i = 0; i < 2; i++) {
        const { syncStatus } = await graphql<{ syncStatus: { backlog: { pending: number; processing: number } } }>('{ syncStatus { backlog { pending processing } } }');
        if (syncStatus.backlog.pending + syncStatus.backlog.processing > 0) return false;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      return true;
    });
  const personChanged = async (marketoId: number) => {
    // what the "Data Value Changes" trigger campaign's webhook sends
    const { status, json } = await call('POST', `${target.url}/webhooks/marketo/person-changed`, { marketoId }, { 'x-webhook-secret': target.marketoWebhookSecret });
    if (status !== 202) throw new Expectation(`person-changed answered ${status}: ${JSON.stringify(json)}`);
  };
  const show = (lines: string[], label: string, value: unknown) => lines.push(`   ${label.padEnd(22)} ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const showActivities = (lines: string[], list: ActivityNode[]) => {
    for (const a of list) {
      lines.push(`   · ${a.type}: ${a.message ?? ''}`);
      for (const f of a.fields.slice(0, 4)) {
        lines.push(
          `       ${f.field}: ${JSON.stringify(f.oldValue)} -> ${JSON.stringify(f.newValue)} (${f.side ?? ''})${f.losingValue !== null && f.losingValue !== undefined ? `, overwritten value kept: ${JSON.stringify(f.losingValue)}, winner ${f.winner ?? ''}` : ''}`,
        );
      }
    }
  };
  const pick = (record: Json, keys: string[]) => Object.fromEntries(keys.map((k) => [k, record[k] ?? null]));
  function expect(condition: boolean, message: string): void {
    if (!condition) throw new Expectation(message);
  }

  async function step(title: string, body: (lines: string[]) => Promise<void>): Promise<void> {
    const lines: string[] = [];
    print('');
    print(`== ${steps.length + 1}. ${title}`);
    try {
      await body(lines);
      lines.forEach((l) => print(l));
      print('   ✔ as expected');
      steps.push({ title, ok: true, lines });
    } catch (error) {
      lines.forEach((l) => print(l));
      const message = error instanceof Error ? error.message : String(error);
      print(`   ✘ ${message}`);
      steps.push({ title, ok: false, lines: [...lines, message] });
    }
  }

  print(`Demo against ${target.url} (Marketo simulator ${target.marketoUrl}, Dataverse simulator ${target.dataverseUrl})`);
  const ready = await call('GET', `${target.url}/readyz`);
  print(`readiness: ${String(ready.json['status'])}${ready.json['sandbox'] ? ' (sandbox)' : ''}`);

  let leadPerson = 0;
  let leadId = '';
  await step('Create from Marketo: a trigger campaign runs "Sync Person to Microsoft" (the sync-person webhook)', async (lines) => {
    const person = await ok('POST', `${target.marketoUrl}/__admin/leads`, {
      email: `ada.lovelace.${run}@analytical-engines.example.com`,
      firstName: 'Ada',
      lastName: 'Lovelace',
      title: 'Head of Analytics',
      company: 'Analytical Engines Ltd',
      city: 'London',
      country: 'United Kingdom',
    });
    leadPerson = Number(person['id']);
    lines.push(`   Marketo person ${leadPerson} created by a marketer (Ada Lovelace); Marketo's webhook call:`);
    // The webhook as README "Marketo set-up" defines it; Marketo fills in the tokens.
    const calls = (await ok('POST', `${target.marketoUrl}/__admin/webhooks/fire`, {
      definition: {
        name: 'Sync Person to Microsoft (lead)',
        url: `${target.url}/webhooks/marketo/sync-person`,
        method: 'POST',
        template: '{"marketoId": {{lead.Id}}, "syncAs": {{my.SyncAs}}}',
        tokenEncoding: 'json',
        headers: { 'Content-Type': 'application/json', 'X-Webhook-Secret': '{{my.WebhookSecret}}' },
        responseType: 'json',
        responseMappings: [
          { attribute: 'dynamicsId', field: 'DynamicsId' },
          { attribute: 'dynamicsEntity', field: 'DynamicsEntity' },
        ],
      },
      leadIds: [leadPerson],
      tokens: { 'my.SyncAs': 'lead', 'my.WebhookSecret': target.marketoWebhookSecret },
    })) as unknown as { status: number | null; responseBody: string | null; mappedFields: Json }[];
    const result = calls[0];
    show(lines, 'webhook answered', `${result?.status ?? 'no answer'} ${result?.responseBody ?? ''}`);
    expect(result?.status === 200, 'sync-person should answer 200');
    const mapped = result?.mappedFields['dynamicsId'];
    leadId = typeof mapped === 'string' ? mapped : '';
    expect(leadId !== '', 'the response mapping should store the Dynamics id on the person');
    const lead = await dynamicsRecord('lead', leadId);
    show(lines, 'Dynamics lead', pick(lead, ['leadid', 'firstname', 'lastname', 'jobtitle', 'companyname', 'emailaddress1']));
    const stored = await marketoPerson(leadPerson);
    show(lines, 'Marketo person', pick(stored, ['id', 'firstName', 'lastName', 'title', 'dynamicsId', 'dynamicsEntity']));
    expect(lead['lastname'] === 'Lovelace' && lead['jobtitle'] === 'Head of Analytics', 'the Dynamics lead should carry the person\'s fields');
    expect(stored['dynamicsId'] === leadId && stored['dynamicsEntity'] === 'lead', 'the person should hold the Dynamics id and entity');
    const log = await activities(leadPerson, 5);
    showActivities(lines, log);
    expect(log.some((a) => a.type === 'CREATED_IN_DYNAMICS') && log.some((a) => a.type === 'LINKED'), 'activities CREATED_IN_DYNAMICS and LINKED');
  });

  await step('Edit in Dynamics: a salesperson changes the lead; the Dataverse webhook step brings it to Marketo', async (lines) => {
    expect(leadId !== '', 'needs step 1');
    await ok('PATCH', `${target.dataverseUrl}/__admin/records/lead/${leadId}`, { jobtitle: 'Chief Data Officer', address1_city: 'Cambridge' });
    const person = await waitFor('the Marketo person to show the new title', async () => {
      const p = await marketoPerson(leadPerson);
      return p['title'] === 'Chief Data Officer' ? p : undefined;
    });
    show(lines, 'Marketo person', pick(person, ['id', 'title', 'city']));
    expect(person['city'] === 'Cambridge', 'the city should follow');
    const log = await waitFor('an UPDATED_IN_MARKETO activity', async () => {
      const l = await activities(leadPerson, 3);
      return l.some((a) => a.type === 'UPDATED_IN_MARKETO') ? l : undefined;
    });
    showActivities(lines, log.slice(0, 1));
  });

  await step('Collision on a contact: both sides change the title before a sync; Dynamics wins for contacts', async (lines) => {
    const contact = await ok('POST', `${target.dataverseUrl}/__admin/records/contact`, {
      firstname: 'Alan',
      lastname: 'Turing',
      emailaddress1: `alan.turing.${run}@bletchley.example.com`,
      jobtitle: 'Cryptanalyst',
    });
    const contactId = String(contact['contactid']);
    const link = await waitFor('the initial sync to link the new contact', async () => {
      const data = await graphql<{ link: { marketoId: string; status: string } | null }>('query ($id: ID) { link(dynamicsId: $id) { marketoId status } }', { id: contactId });
      return data.link;
    });
    const personId = Number(link.marketoId);
    await waitFor('the initial sync to fill the person', async () => (await marketoPerson(personId))['title'] === 'Cryptanalyst');
    await settled();
    lines.push(`   contact ${contactId} created in Dynamics and linked to Marketo person ${personId}`);
    await ok('PATCH', `${target.marketoUrl}/__admin/leads/${personId}`, { title: 'Head of Codebreaking' });
    await ok('PATCH', `${target.dataverseUrl}/__admin/records/contact/${contactId}`, { jobtitle: 'Chief Cryptanalyst' });
    await personChanged(personId);
    lines.push(`   Marketo title := "Head of Codebreaking", Dynamics jobtitle := "Chief Cryptanalyst"`);
    const collision = await waitFor('a COLLISION_RESOLVED activity', async () => (await activities(personId, 5)).find((a) => a.type === 'COLLISION_RESOLVED'));
    showActivities(lines, [collision]);
    const person = await waitFor('the Marketo person to take the Dynamics value', async () => {
      const p = await marketoPerson(personId);
      return p['title'] === 'Chief Cryptanalyst' ? p : undefined;
    });
    const record = await dynamicsRecord('contact', contactId);
    show(lines, 'Marketo person', pick(person, ['id', 'title']));
    show(lines, 'Dynamics contact', pick(record, ['contactid', 'jobtitle']));
    expect(person['title'] === 'Chief Cryptanalyst' && record['jobtitle'] === 'Chief Cryptanalyst', 'both systems should hold the Dynamics value');
    expect(collision.fields.some((f) => f.field === 'title' && f.losingValue === 'Head of Codebreaking' && f.winner === 'DYNAMICS'), 'the losing Marketo value is kept on the activity');
  });

  await step('Collision on a lead: both sides change the title; Marketo wins for leads', async (lines) => {
    expect(leadId !== '', 'needs step 1');
    await settled();
    await ok('PATCH', `${target.marketoUrl}/__admin/leads/${leadPerson}`, { title: 'VP Analytics (marketing)' });
    await ok('PATCH', `${target.dataverseUrl}/__admin/records/lead/${leadId}`, { jobtitle: 'Analytics Director (sales)' });
    await personChanged(leadPerson);
    lines.push(`   Marketo title := "VP Analytics (marketing)", Dynamics jobtitle := "Analytics Director (sales)"`);
    const collision = await waitFor('a COLLISION_RESOLVED activity', async () => (await activities(leadPerson, 5)).find((a) => a.type === 'COLLISION_RESOLVED'));
    showActivities(lines, [collision]);
    const record = await waitFor('the Dynamics lead to take the Marketo value', async () => {
      const r = await dynamicsRecord('lead', leadId);
      return r['jobtitle'] === 'VP Analytics (marketing)' ? r : undefined;
    });
    show(lines, 'Dynamics lead', pick(record, ['leadid', 'jobtitle']));
    show(lines, 'Marketo person', pick(await marketoPerson(leadPerson), ['id', 'title']));
    expect(collision.fields.some((f) => f.field === 'title' && f.losingValue === 'Analytics Director (sales)' && f.winner === 'MARKETO'), 'the losing Dynamics value is kept on the activity');
  });

  await step('Validation rejection: a Dynamics plug-in refuses a value; nothing is forced, the message is logged', async (lines) => {
    expect(leadId !== '', 'needs step 1');
    const rule = await ok('POST', `${target.dataverseUrl}/__admin/business-rules`, {
      table: 'lead',
      column: 'jobtitle',
      kind: 'pattern',
      pattern: '^[^0-9]*$',
      message: 'Job Title must not contain digits (plug-in ContosoLeadValidation).',
    });
    lines.push('   Dynamics now has a plug-in: lead Job Title must not contain digits');
    await settled();
    try {
      await ok('PATCH', `${target.marketoUrl}/__admin/leads/${leadPerson}`, { title: 'Agent 007' });
      await personChanged(leadPerson);
      lines.push('   Marketo title := "Agent 007" (person-changed webhook sent)');
      const rejected = await waitFor('a VALIDATION_REJECTED activity', async () => (await activities(leadPerson, 5)).find((a) => a.type === 'VALIDATION_REJECTED'));
      showActivities(lines, [rejected]);
      const record = await dynamicsRecord('lead', leadId);
      show(lines, 'Dynamics lead', pick(record, ['leadid', 'jobtitle']));
      show(lines, 'Marketo person', pick(await marketoPerson(leadPerson), ['id', 'title']));
      expect(rejected.message?.includes('must not contain digits') === true, "the activity should carry Dynamics' message");
      expect(record['jobtitle'] === 'VP Analytics (marketing)', 'Dynamics keeps its value');
    } finally {
      await call('DELETE', `${target.dataverseUrl}/__admin/business-rules/${String(rule['id'])}`);
    }
  });

  await step('Account rename: a contact’s company is its account; renaming the account reaches every linked person', async (lines) => {
    const account = await ok('POST', `${target.dataverseUrl}/__admin/records/account`, { name: 'Bletchley Park Ltd', industrycode: 7, websiteurl: 'https://bletchley.example.com' });
    const accountId = String(account['accountid']);
    const contactIds: string[] = [];
    for (const first of ['Joan', 'Gordon', 'Dilly']) {
      const contact = await ok('POST', `${target.dataverseUrl}/__admin/records/contact`, {
        firstname: first,
        lastname: 'Codebreaker',
        emailaddress1: `${first.toLowerCase()}.${run}@bletchley.example.com`,
        'parentcustomerid_account@odata.bind': `/accounts(${accountId})`,
      });
      contactIds.push(String(contact['contactid']));
    }
    const personIds = await waitFor('the three contacts to be linked', async () => {
      const ids: number[] = [];
      for (const id of contactIds) {
        const data = await graphql<{ link: { marketoId: string } | null }>('query ($id: ID) { link(dynamicsId: $id) { marketoId } }', { id });
        if (!data.link) return undefined;
        ids.push(Number(data.link.marketoId));
      }
      return ids;
    });
    await settled();
    show(lines, 'persons before', await Promise.all(personIds.map(async (id) => pick(await marketoPerson(id), ['id', 'company', 'industry', 'website']))));
    await ok('PATCH', `${target.dataverseUrl}/__admin/records/account/${accountId}`, { name: 'Government Code and Cypher School' });
    lines.push('   Dynamics account renamed to "Government Code and Cypher School" (its Update webhook step fans out to the contacts)');
    await waitFor('every linked person to show the new company', async () => {
      for (const id of personIds) if ((await marketoPerson(id))['company'] !== 'Government Code and Cypher School') return false;
      return true;
    });
    show(lines, 'persons after', await Promise.all(personIds.map(async (id) => pick(await marketoPerson(id), ['id', 'company']))));
    showActivities(lines, (await activities(personIds[0]!, 3)).filter((a) => a.type === 'UPDATED_IN_MARKETO').slice(0, 1));
  });

  const failed = steps.filter((s) => !s.ok);
  print('');
  print(failed.length === 0 ? `All ${steps.length} steps held. (With npm start, the operator console at / shows such collisions and rejections.)` : `${failed.length} of ${steps.length} steps failed: ${failed.map((s) => s.title).join('; ')}`);
  return { ok: failed.length === 0, steps };
}

async function main(): Promise<void> {
  // A sandbox of its own: in-memory database, a free port, the same seed as `npm start`.
  const config = loadConfig({ ...process.env, PORT: process.env['DEMO_PORT'] ?? '0', HOST: '127.0.0.1', DATA_DIR: 'memory://', DATABASE_URL: '', INBOX_POLL_MS: '50' });
  if (!config.sandbox) throw new Error('npm run demo runs against the simulators only: unset the MARKETO_* and DYNAMICS_* credentials');
  const service = await startService(config, { logger: pino({ level: process.env['LOG_LEVEL'] ?? 'error' }), seed: true });
  let ok = false;
  try {
    const sandbox = service.sandbox!;
    ({ ok } = await runDemo({
      url: service.url,
      graphqlToken: service.graphqlToken!,
      marketoWebhookSecret: service.webhookSecrets.marketo,
      marketoUrl: sandbox.marketo.url,
      dataverseUrl: sandbox.dataverse.url,
    }));
  } finally {
    await service.stop('demo finished');
  }
  process.exit(ok ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
