import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// SPEC behaviours 2-6 and DESIGN's invariants, through the real app, with both simulators as the
// peers: every change reaches the engine the way it would in production (Dataverse webhook steps,
// Marketo flow-action webhooks), and the tests look at both systems and the activity log.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;

type VendorRequest = { vendor: 'marketo' | 'dynamics'; method: string; url: string; body: string };

/**
 * Every request the service sends to a vendor, seen at the HTTP boundary, with a hook a test may
 * set to act at the exact moment one is sent (before it goes).
 */
function vendorTraffic() {
  const sent: VendorRequest[] = [];
  let hook: ((request: VendorRequest) => void) | undefined;
  const wrap =
    (vendor: VendorRequest['vendor']) =>
    (next: typeof fetch): typeof fetch =>
    (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
      const request = { vendor, method: init?.method ?? 'GET', url, body: typeof init?.body === 'string' ? init.body : '' };
      sent.push(request);
      hook?.(request);
      return next(input, init);
    };
  return {
    sent,
    set: (next: typeof hook) => (hook = next),
    intercept: { marketo: wrap('marketo'), dynamics: wrap('dynamics') },
  };
}

/** A request that writes: Marketo's Sync Leads and deletes, any Dataverse write or $batch of writes. */
const isVendorWrite = (r: VendorRequest) =>
  r.vendor === 'marketo'
    ? r.method === 'POST' && /\/rest\/v1\/leads(\/delete)?\.json$/.test(new URL(r.url).pathname) && !r.url.includes('_method=GET')
    : r.method !== 'GET' && !/\/token$|\/oauth2\//.test(new URL(r.url).pathname);

describe.each(testEngines())('the sync engine on %s', (engine) => {
  let t: TestService;
  const traffic = vendorTraffic();

  beforeAll(async () => {
    t = await bootService(engine, {}, { interceptVendorHttp: traffic.intercept });
  });
  afterEach(() => {
    traffic.set(undefined);
  });
  afterAll(async () => {
    await t.stop();
  });

  /** A Dynamics record created by a user, synced into a linked Marketo person. */
  async function linkedPair(entity: 'lead' | 'contact', values: Record<string, unknown> = {}) {
    const email = unique(entity);
    const created = t.dataverse.create(entity, { firstname: 'Ada', lastname: 'Lovelace', emailaddress1: email, jobtitle: 'CTO', ...values });
    const dynamicsId = String(created[`${entity}id`]);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId } });
    return { dynamicsId, marketoId: link.marketoId, email };
  }

  it('creates a Marketo person for a new Dynamics lead, matched by nothing, and links them', async () => {
    const { marketoId, email } = await linkedPair('lead', { companyname: 'Analytical Engines' });
    const person = t.marketo.getLead(marketoId)!;
    expect(person).toMatchObject({ email, firstName: 'Ada', lastName: 'Lovelace', title: 'CTO', company: 'Analytical Engines' });
    expect((await t.activities(marketoId)).map((a) => a.type)).toEqual(['CREATED_IN_MARKETO', 'LINKED']);
  });

  it('links a new Dynamics contact to the Marketo person with the same email instead of creating another', async () => {
    const email = unique('existing');
    const person = t.marketo.createLead({ email: email.toUpperCase(), firstName: 'Grace', lastName: 'Hopper' });
    const before = t.marketo.listLeads({ limit: 100_000 }).length;
    const created = t.dataverse.create('contact', { firstname: 'Grace', lastname: 'Hopper', emailaddress1: email, jobtitle: 'Rear Admiral' });
    await t.settle();
    expect(t.marketo.listLeads({ limit: 100_000 })).toHaveLength(before);
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { marketoId: person.id } });
    expect(link).toMatchObject({ dynamicsEntity: 'CONTACT', dynamicsId: created.contactid });
    // never synced before: the empty Marketo title is filled from Dynamics
    expect(t.marketo.getLead(person.id)?.title).toBe('Rear Admiral');
  });

  // The edit lands at a moment the test picks at the HTTP boundary, not after a sleep: just before
  // the engine reads the new record, or while it creates the person from what it read. On a lead
  // too, where a collision would go Marketo's way and revert the edit.
  const moments = {
    'before the engine reads the new record': (r: VendorRequest, id: string) => r.vendor === 'dynamics' && r.method === 'GET' && r.url.toLowerCase().includes(id),
    'while the engine creates the person': (r: VendorRequest, _id: string, email: string) => r.vendor === 'marketo' && isVendorWrite(r) && r.body.includes(email),
  };
  it.each([
    ['contact', 'before the engine reads the new record'],
    ['contact', 'while the engine creates the person'],
    ['lead', 'before the engine reads the new record'],
    ['lead', 'while the engine creates the person'],
  ] as const)('an edit made right after a new Dynamics %s was created, %s, is not lost', async (entity, moment) => {
    const email = unique('quick');
    let id = '';
    const editsAt: VendorRequest[] = [];
    traffic.set((request) => {
      if (editsAt.length > 0 || id === '' || !moments[moment](request, id, email)) return;
      editsAt.push(request);
      t.dataverse.update(entity, id, { jobtitle: 'Second' });
      t.dataverse.update(entity, id, { address1_city: 'Quito' });
    });
    const created = t.dataverse.create(entity, { firstname: 'Quick', lastname: 'Edit', emailaddress1: email, jobtitle: 'First' });
    id = String(created[`${entity}id`]);
    await t.settle();
    // the edit happened at that moment, and only then
    expect(editsAt).toHaveLength(1);
    const [create] = traffic.sent.filter((r) => r.vendor === 'marketo' && isVendorWrite(r) && r.body.includes(email));
    // created from what the engine read: the value before the edit when it landed during the create
    expect(JSON.parse(create!.body)).toMatchObject({ input: [expect.objectContaining({ title: editsAt[0] === create ? 'First' : 'Second' })] });
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: id } });
    expect(t.marketo.getLead(link.marketoId)).toMatchObject({ email, title: 'Second', city: 'Quito' });
    expect(t.dataverse.get(entity, id)).toMatchObject({ jobtitle: 'Second', address1_city: 'Quito' });
    expect(t.marketo.listLeads({ limit: 100_000 }).filter((p) => p.email === email)).toHaveLength(1);
    // a one-sided Dynamics edit after the create, not a collision
    expect((await t.activities(link.marketoId)).map((a) => a.type)).not.toContain('COLLISION_RESOLVED');
  });

  it('an edit to a Dynamics contact shows up on the Marketo person', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.dataverse.update('contact', dynamicsId, { jobtitle: 'Chief Scientist', address1_city: 'London' });
    await t.settle();
    expect(t.marketo.getLead(marketoId)).toMatchObject({ title: 'Chief Scientist', city: 'London' });
    const updated = (await t.activities(marketoId)).find((a) => a.type === 'UPDATED_IN_MARKETO');
    expect(updated?.fields).toEqual(
      expect.arrayContaining([expect.objectContaining({ field: 'title', oldValue: 'CTO', newValue: 'Chief Scientist', side: 'MARKETO' })]),
    );
  });

  it('an edit to the Marketo person shows up on the linked Dynamics lead', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.marketo.updateLead(marketoId, { title: 'CEO', phone: '+44 20 7946 0000' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)).toMatchObject({ jobtitle: 'CEO', telephone1: '+44 20 7946 0000' });
  });

  it('lead collision: Marketo wins and the Dynamics value is kept in the activity log', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.marketo.updateLead(marketoId, { title: 'Marketing title' });
    t.dataverse.update('lead', dynamicsId, { jobtitle: 'Sales title' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Marketing title');
    expect(t.marketo.getLead(marketoId)?.title).toBe('Marketing title');
    const collision = (await t.activities(marketoId)).find((a) => a.type === 'COLLISION_RESOLVED');
    expect(collision?.fields).toEqual([
      expect.objectContaining({
        field: 'title',
        baseValue: 'CTO',
        marketoValue: 'Marketing title',
        dynamicsValue: 'Sales title',
        winner: 'MARKETO',
        rule: 'LEAD_MARKETO_WINS',
        losingValue: 'Sales title',
      }),
    ]);
  });

  it('contact collision keeps the Dynamics value and logs the Marketo one', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.marketo.updateLead(marketoId, { title: 'Marketing title' });
    t.dataverse.update('contact', dynamicsId, { jobtitle: 'Sales title' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(t.marketo.getLead(marketoId)?.title).toBe('Sales title');
    expect(t.dataverse.get('contact', dynamicsId)?.jobtitle).toBe('Sales title');
    const collision = (await t.activities(marketoId)).find((a) => a.type === 'COLLISION_RESOLVED');
    expect(collision?.fields).toEqual([
      expect.objectContaining({ field: 'title', winner: 'DYNAMICS', rule: 'CONTACT_DYNAMICS_WINS', losingValue: 'Marketing title' }),
    ]);
  });

  it('different fields changed on the two sides both survive', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.marketo.updateLead(marketoId, { phone: '555-0100' });
    t.dataverse.update('contact', dynamicsId, { address1_city: 'Paris' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(t.marketo.getLead(marketoId)).toMatchObject({ phone: '555-0100', city: 'Paris' });
    expect(t.dataverse.get('contact', dynamicsId)).toMatchObject({ telephone1: '555-0100', address1_city: 'Paris' });
    expect((await t.activities(marketoId)).some((a) => a.type === 'COLLISION_RESOLVED')).toBe(false);
  });

  it('a value the sync wrote never comes back as a change (no ping-pong)', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.marketo.updateLead(marketoId, { title: 'Echo test' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    const countAfterFirst = (await t.activities(marketoId)).length;
    // Our own PATCH fired Dataverse's webhook (initiated by the sync user): ignored at intake.
    const echoes = t.dataverse.webhookDeliveries().filter((d) => d.body.includes(dynamicsId));
    expect(echoes.length).toBeGreaterThan(0);
    // Marketo's trigger fires for API changes too; the merge finds nothing to do.
    await t.marketoWebhook('person-changed', { marketoId, hint: 'second campaign' }).expect(202);
    await t.settle();
    expect((await t.activities(marketoId)).length).toBe(countAfterFirst);
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Echo test');
  });

  it('never creates an unlinked Marketo person in Dynamics without Sync Person to Microsoft', async () => {
    const person = t.marketo.createLead({ email: unique('unlinked'), lastName: 'Nobody' });
    const leads = t.dataverse.count('lead');
    const contacts = t.dataverse.count('contact');
    await t.marketoWebhook('person-changed', { marketoId: person.id }).expect(202);
    await t.settle();
    expect([t.dataverse.count('lead'), t.dataverse.count('contact')]).toEqual([leads, contacts]);
    expect(await t.service.db.prisma.syncLink.findUnique({ where: { marketoId: person.id } })).toBeNull();
  });

  it('Sync Person to Microsoft creates a lead in real time and answers with its id', async () => {
    const person = t.marketo.createLead({ email: unique('flow'), firstName: 'Katherine', lastName: 'Johnson', company: 'NASA' });
    // real time = the answer carries the created record (no wall-clock bound: that is the bench's job)
    const res = await t.marketoWebhook('sync-person', { marketoId: String(person.id) }).expect(200);
    expect(res.body).toMatchObject({ status: 'created', marketoId: person.id, dynamicsEntity: 'lead' });
    expect(t.dataverse.get('lead', res.body.dynamicsId)).toMatchObject({ firstname: 'Katherine', lastname: 'Johnson', companyname: 'NASA' });
    expect((await t.activities(person.id)).map((a) => a.type)).toEqual(['CREATED_IN_DYNAMICS', 'LINKED']);
  });

  it('Sync Person to Microsoft as contact, assigned to an owner by domain name', async () => {
    const ownerId = t.dataverse.addUser({ domainname: 'rep@contoso.com', firstname: 'Rep' });
    const person = t.marketo.createLead({ email: unique('contact'), lastName: 'Contact' });
    const res = await t.marketoWebhook('sync-person', { marketoId: person.id, syncAs: 'contact', assignTo: 'rep@contoso.com' }).expect(200);
    expect(res.body).toMatchObject({ status: 'created', dynamicsEntity: 'contact' });
    expect(String(t.dataverse.get('contact', res.body.dynamicsId)?._ownerid_value).toLowerCase()).toBe(ownerId.toLowerCase());
  });

  it('Sync Person to Microsoft for a linked person creates nothing and answers with the link', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    const leads = t.dataverse.count('lead');
    const res = await t.marketoWebhook('sync-person', { marketoId }).expect(200);
    expect(res.body).toEqual({ status: 'existing', marketoId, dynamicsEntity: 'lead', dynamicsId });
    expect(t.dataverse.count('lead')).toBe(leads);
  });

  it('two concurrent Sync Person calls for the same person create one record', async () => {
    const person = t.marketo.createLead({ email: unique('twice'), lastName: 'Twice' });
    const leads = t.dataverse.count('lead');
    const [a, b] = await Promise.all([t.marketoWebhook('sync-person', { marketoId: person.id }), t.marketoWebhook('sync-person', { marketoId: person.id })]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([a.body.status, b.body.status].sort()).toEqual(['created', 'existing']);
    expect(a.body.dynamicsId).toBe(b.body.dynamicsId);
    expect(t.dataverse.count('lead')).toBe(leads + 1);
  });

  it('respects a Dynamics validation rule: the rejection and its message are logged once, the other fields still sync', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.marketo.updateLead(marketoId, { email: 'not-an-email', city: 'Boston' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    const record = t.dataverse.get('lead', dynamicsId)!;
    expect(record.address1_city).toBe('Boston');
    expect(record.emailaddress1).not.toBe('not-an-email');
    const rejected = (await t.activities(marketoId)).filter((a) => a.type === 'VALIDATION_REJECTED');
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.message).toMatch(/email/i);
    expect(rejected[0]?.fields).toEqual([expect.objectContaining({ field: 'email', newValue: 'not-an-email' })]);

    // not retried while the value stays the same...
    await t.marketoWebhook('person-changed', { marketoId, hint: 'again' }).expect(202);
    await t.settle();
    expect((await t.activities(marketoId)).filter((a) => a.type === 'VALIDATION_REJECTED')).toHaveLength(1);
    // ...and synced once it is fixed
    const fixed = unique('fixed');
    t.marketo.updateLead(marketoId, { email: fixed });
    await t.marketoWebhook('person-changed', { marketoId, hint: 'fixed' }).expect(202);
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)?.emailaddress1).toBe(fixed);
  });

  it('never reads or writes a column the sync user cannot read, and never writes one it cannot update', async () => {
    t.dataverse.secureColumn('contact', 'mobilephone', { read: false, update: false, create: false });
    t.dataverse.secureColumn('contact', 'telephone1', { read: true, update: false, create: false });
    t.service.refreshMetadata();
    try {
      const { dynamicsId, marketoId } = await linkedPair('contact', { mobilephone: '+1 555 0199', telephone1: '+1 555 0100' });
      expect(t.marketo.getLead(marketoId)?.mobilePhone ?? null).toBeNull();
      expect(t.marketo.getLead(marketoId)?.phone).toBe('+1 555 0100');
      t.marketo.updateLead(marketoId, { mobilePhone: '+1 555 0000', phone: '+1 555 0101' });
      await t.marketoWebhook('person-changed', { marketoId }).expect(202);
      await t.settle();
      expect(t.dataverse.get('contact', dynamicsId)).toMatchObject({ mobilephone: '+1 555 0199', telephone1: '+1 555 0100' });
      const skipped = (await t.activities(marketoId)).filter((a) => a.type === 'FIELD_SKIPPED');
      expect(skipped).toHaveLength(1);
      expect(skipped[0]?.fields).toEqual([expect.objectContaining({ field: 'phone', newValue: '+1 555 0101' })]);
      await t.marketoWebhook('person-changed', { marketoId, hint: 'again' }).expect(202);
      await t.settle();
      expect((await t.activities(marketoId)).filter((a) => a.type === 'FIELD_SKIPPED')).toHaveLength(1);
    } finally {
      t.dataverse.unsecureColumn('contact', 'mobilephone');
      t.dataverse.unsecureColumn('contact', 'telephone1');
      t.service.refreshMetadata();
    }
  });

  it('a Dynamics delete keeps the Marketo person, marks the link and sets Microsoft is Deleted', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.dataverse.delete('lead', dynamicsId);
    await t.settle();
    expect(t.marketo.getLead(marketoId)).toMatchObject({ microsoftIsDeleted: true });
    expect(await t.service.db.prisma.syncLink.findUnique({ where: { marketoId } })).toMatchObject({ status: 'DELETED_IN_DYNAMICS' });
    expect((await t.activities(marketoId)).map((a) => a.type)).toContain('DELETED_IN_DYNAMICS');
  });

  it('new_synctomkto = No stops updates without deleting the person, and Yes syncs again at once', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.dataverse.update('contact', dynamicsId, { new_synctomkto: false, jobtitle: 'Hidden' });
    await t.settle();
    expect(t.marketo.getLead(marketoId)?.title).toBe('CTO');
    expect(await t.service.db.prisma.syncLink.findUnique({ where: { marketoId } })).toMatchObject({ status: 'FILTERED' });
    t.dataverse.update('contact', dynamicsId, { new_synctomkto: true });
    await t.settle();
    expect(t.marketo.getLead(marketoId)?.title).toBe('Hidden');
    expect(await t.service.db.prisma.syncLink.findUnique({ where: { marketoId } })).toMatchObject({ status: 'ACTIVE' });
  });

  it('a lead qualified into a contact moves the person to the contact, without a duplicate person', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    const persons = t.marketo.listLeads({ limit: 100_000 }).length;
    const contact = t.dataverse.qualifyLead(dynamicsId);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId } });
    expect(link).toMatchObject({ dynamicsEntity: 'CONTACT', dynamicsId: contact.contactid });
    expect(t.marketo.listLeads({ limit: 100_000 })).toHaveLength(persons);
    expect((await t.activities(marketoId)).map((a) => a.type)).toContain('LINK_MOVED');
  });

  it('replaying every webhook of a scenario, after the first deliveries are forgotten, runs the engine and changes nothing', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.dataverse.update('contact', dynamicsId, { jobtitle: 'Replay me' });
    await t.settle();
    const prisma = t.service.db.prisma;
    const activities = await prisma.activity.count();
    const link = await prisma.syncLink.findUniqueOrThrow({ where: { marketoId } });
    const record = t.dataverse.get('contact', dynamicsId);
    const person = t.marketo.getLead(marketoId);
    const deliveries = t.dataverse.webhookDeliveries().filter((d) => d.body.includes(dynamicsId));
    expect(deliveries.length).toBeGreaterThan(1);
    // The inbox answers a delivery it still remembers as a duplicate without running the engine.
    // Make it forget them (as when the first deliveries were pruned), so every replay is judged by
    // the engine itself: it reads both sides fresh and must find nothing to do.
    await prisma.$executeRaw`UPDATE change_event SET "dedupeKey" = "dedupeKey" || ':delivered-before' WHERE "dynamicsId" = ${dynamicsId}::uuid`;
    const before = traffic.sent.length;
    const replayed: string[] = [];
    for (const delivery of deliveries) {
      const res = await t.http
        .post(new URL(delivery.url).pathname + new URL(delivery.url).search)
        .set('content-type', 'application/json')
        .send(delivery.body);
      expect([200, 202]).toContain(res.status);
      // queued for the engine, or recognised at the door as the sync user's own write
      expect(['queued', 'ignored']).toContain(res.body.status);
      if (res.body.status === 'queued') replayed.push(res.body.eventId as string);
    }
    // the user's create and edit at least went through the engine again
    expect(replayed.length).toBeGreaterThanOrEqual(2);
    await t.settle();
    const events = await prisma.changeEvent.findMany({ where: { id: { in: replayed } } });
    expect(events.map((e) => e.status)).toEqual(replayed.map(() => 'DONE'));
    // the engine read both sides and wrote to neither
    const during = traffic.sent.slice(before);
    expect(during.some((r) => r.vendor === 'dynamics' && r.method === 'GET' && r.url.toLowerCase().includes(dynamicsId))).toBe(true);
    expect(during.filter(isVendorWrite)).toEqual([]);
    expect(await prisma.activity.count()).toBe(activities);
    // the link holds the same base and the same Dynamics version. (What may move: its commit counter,
    // `revision`, counts the engine's no-op commits; and `marketoVersion` catches up with the
    // person's updatedAt after our own earlier write, which it did not read back.)
    const agreed = ({ status, snapshot, fieldOrigins, dynamicsVersion, dynamicsEtag }: typeof link) => ({ status, snapshot, fieldOrigins, dynamicsVersion, dynamicsEtag });
    expect(agreed(await prisma.syncLink.findUniqueOrThrow({ where: { marketoId } }))).toEqual(agreed(link));
    // both records as they were, their revisions (versionnumber, ETag, updatedAt) included
    expect(t.dataverse.get('contact', dynamicsId)).toEqual(record);
    expect(t.marketo.getLead(marketoId)).toEqual(person);
  });
});
