import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// Batch Sync Person through the real app and both simulators: an operator starts it with GraphQL,
// a runner works through the Marketo static list page by page through Sync Person's journaled
// create, and a replica that dies mid-list leaves a job another runner resumes from its cursor.
// Vendor calls are counted, never timed.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const NEVER = '0 0 0 1 1 *';
// pages of 50 (Marketo's maximum is 300, the default): several pages from a list this test can afford
const PAGE = 50;

type Sent = { method: string; url: string; body?: string };

describe.each(testEngines())('Batch Sync Person on %s', (engine) => {
  let t: TestService;
  const sent: { marketo: Sent[]; dynamics: Sent[] } = { marketo: [], dynamics: [] };
  // a test's hook on each Dataverse request, awaited before the request goes
  let onDynamicsRequest: ((request: Sent) => Promise<void>) | undefined;
  const record = (into: Sent[]) => (next: typeof fetch) => async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
    const request = { method: init?.method ?? 'GET', url, body: typeof init?.body === 'string' ? init.body : '' };
    into.push(request);
    if (into === sent.dynamics) await onDynamicsRequest?.(request);
    return next(input, init);
  };

  beforeAll(async () => {
    t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER }, { batchSyncPageSize: PAGE, interceptVendorHttp: { marketo: record(sent.marketo), dynamics: record(sent.dynamics) } });
  });
  afterAll(async () => {
    await t.stop();
  });

  const gql = (query: string, variables: Record<string, unknown> = {}) =>
    t.http.post('/graphql').set('authorization', `Bearer ${t.service.graphqlToken}`).send({ query, variables });
  const batchRow = (id: string) => t.service.db.prisma.batchSync.findUniqueOrThrow({ where: { id } });

  /** waits (bounded, against hangs) until the batch row satisfies `done` */
  async function until(id: string, done: (row: Awaited<ReturnType<typeof batchRow>>) => boolean) {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const row = await batchRow(id);
      if (done(row)) return row;
      if (Date.now() > deadline) throw new Error(`batch ${id} stuck: ${JSON.stringify(row)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('creates or links every person of a list, one Marketo call a page, and a dead replica’s batch is resumed from its cursor', async () => {
    // a lead nobody linked yet (its webhook step was off), a person already linked, one Dynamics refuses
    const steps = t.dataverse.webhooks();
    for (const step of steps) t.dataverse.unregisterWebhook(step.id);
    const unlinkedEmail = unique('unlinked');
    const unlinkedLead = String(t.dataverse.create('lead', { lastname: 'Waiting', emailaddress1: unlinkedEmail }).leadid);
    for (const step of steps) t.dataverse.registerWebhook(step);
    const linkedLead = String(t.dataverse.create('lead', { lastname: 'Linked', emailaddress1: unique('linked') }).leadid);
    await t.settle();
    const alreadyLinked = (await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: linkedLead } })).marketoId;
    t.dataverse.addBusinessRule({ table: 'lead', column: 'lastname', kind: 'pattern', pattern: '^(?!Refused$)', message: 'Refused is not a last name here', messages: ['Create'] });

    const fresh = 4 * PAGE;
    const newIds = t.marketo.seedLeads(Array.from({ length: fresh }, (_, i) => ({ email: unique(`fair${i}`), firstName: 'Trade', lastName: `Show ${i}` })));
    const [matched, refused] = t.marketo.seedLeads([{ email: unlinkedEmail, lastName: 'Waiting' }, { email: unique('refused'), lastName: 'Refused' }]);
    const members = [...newIds, matched!, refused!, alreadyLinked];
    const listId = t.marketo.createList('Trade show', members);
    const leadsBefore = t.dataverse.count('lead');
    sent.marketo.length = 0;
    sent.dynamics.length = 0;

    const started = await gql('mutation($l: Int!) { startBatchSyncPerson(listId: $l) { ok error batch { id status } } }', { l: listId });
    expect(started.body.data.startBatchSyncPerson).toMatchObject({ ok: true, batch: { status: 'RUNNING' } });
    const id = started.body.data.startBatchSyncPerson.batch.id as string;

    // the replica stops after a page or two, with the list unfinished...
    await until(id, (row) => row.pages >= 1);
    await t.service.batchSyncs.stop();
    const stopped = await batchRow(id);
    expect(stopped.status).toBe('RUNNING');
    expect(stopped.cursor).not.toBeNull();
    const listReadsBefore = sent.marketo.filter((r) => r.url.includes(`/lists/${listId}/leads.json`)).length;
    expect(listReadsBefore).toBe(stopped.pages);
    // ...as if it died: its lease runs out, and another runner takes the job from its cursor
    await t.service.db.prisma.$executeRaw`UPDATE batch_sync SET "leaseOwner" = 'replica-that-died', "leaseExpiresAt" = now() - interval '1 second' WHERE id = ${id}::uuid`;
    t.service.batchSyncs.begin();
    const done = await until(id, (row) => row.status !== 'RUNNING');
    await t.settle();

    const pages = Math.ceil(members.length / PAGE);
    expect(done).toMatchObject({ status: 'DONE', pages, persons: members.length, created: fresh, linked: 2, refused: 1 });
    // every page read once, by one runner or the other: the resumed runner began at the cursor
    expect(sent.marketo.filter((r) => r.url.includes(`/lists/${listId}/leads.json`))).toHaveLength(pages);
    // 0 duplicates: one lead per new person, the waiting lead linked rather than created again
    expect(t.dataverse.count('lead') - leadsBefore).toBe(fresh);
    const links = await t.service.db.prisma.syncLink.findMany({ where: { marketoId: { in: members } } });
    expect(links).toHaveLength(members.length - 1);
    expect(links.find((l) => l.marketoId === matched)?.dynamicsId).toBe(unlinkedLead);

    // Dataverse: every create rode a $batch request (how full they are is the bench's to count)
    expect(sent.dynamics.filter((r) => r.method === 'POST' && r.url.endsWith('$batch')).length).toBeGreaterThan(0);
    expect(sent.dynamics.filter((r) => r.method === 'POST' && /\/leads(\?|$)/.test(r.url))).toHaveLength(0);

    const answer = await gql('query($id: ID!) { batchSync(id: $id) { status persons created linked refused items(outcome: "refused") { marketoId message } } }', { id });
    expect(answer.body.data.batchSync).toMatchObject({ status: 'DONE', persons: members.length, created: fresh, linked: 2, refused: 1 });
    expect(answer.body.data.batchSync.items).toEqual([{ marketoId: String(refused), message: expect.stringContaining('Refused is not a last name here') }]);
    const refusal = await t.service.db.prisma.activity.findFirst({ where: { marketoId: refused!, type: 'VALIDATION_REJECTED' } });
    expect(refusal?.message).toContain('Refused is not a last name here');
  });

  it('a batch cancelled while its page runs stops between two persons: the heartbeat finds its lease gone', async () => {
    const ids = t.marketo.seedLeads(Array.from({ length: PAGE }, (_, i) => ({ email: unique(`cancel${i}`), firstName: 'Cancel', lastName: `Me ${i}` })));
    const listId = t.marketo.createList('Cancelled mid-page', ids);
    const leadsBefore = t.dataverse.count('lead');
    // the first $batch of creates: the operator cancels, and the replica's next beat sees it
    let cancelling: Promise<unknown> | undefined;
    onDynamicsRequest = async (request) => {
      // the first $batch carrying creates of this list's persons (their first name), while their page runs
      if (cancelling || request.method !== 'POST' || !request.url.endsWith('$batch') || !request.body?.includes('"firstname":"Cancel"')) return;
      cancelling = (async () => {
        const running = await t.service.db.prisma.batchSync.findFirstOrThrow({ where: { listId, status: 'RUNNING' } });
        const answer: unknown = (await gql('mutation($id: ID!) { cancelBatchSyncPerson(id: $id) { ok error } }', { id: running.id })).body;
        await t.service.leases.beat();
        return answer;
      })();
      await cancelling;
    };
    let batchId = '';
    try {
      const started = await gql('mutation($l: Int!) { startBatchSyncPerson(listId: $l) { ok batch { id } } }', { l: listId });
      batchId = started.body.data.startBatchSyncPerson.batch.id as string;
      await until(batchId, (row) => row.status !== 'RUNNING');
      // the page's persons in flight finish; none starts after the cancel, so the page is left short
      await t.service.batchSyncs.stop();
      t.service.batchSyncs.begin();
      await t.settle();
    } finally {
      onDynamicsRequest = undefined;
    }
    expect(await cancelling).toEqual({ data: { cancelBatchSyncPerson: { ok: true, error: null } } });
    expect(await batchRow(batchId)).toMatchObject({ status: 'CANCELLED', pages: 0, persons: 0 });
    const created = t.dataverse.count('lead') - leadsBefore;
    expect(created).toBeGreaterThan(0);
    expect(created).toBeLessThan(PAGE);
  });

  it('a list Marketo does not know fails the batch with Marketo’s message', async () => {
    const started = await gql('mutation { startBatchSyncPerson(listId: 999999, syncAs: CONTACT) { ok batch { id } } }');
    const id = started.body.data.startBatchSyncPerson.batch.id as string;
    const done = await until(id, (row) => row.status !== 'RUNNING');
    expect(done.status).toBe('FAILED');
    expect(done.error).toContain('1013');
  });

  it('refuses a read token', async () => {
    const { secret } = await t.service.tokens.create({ name: 'reader', scope: 'read', expiresAt: null });
    const answer = await t.http.post('/graphql').set('authorization', `Bearer ${secret}`).send({ query: 'mutation { startBatchSyncPerson(listId: 1) { ok } }' });
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});
