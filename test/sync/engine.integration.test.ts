import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// SPEC behaviours 2-6 and DESIGN's invariants, through the real app, with both simulators as the
// peers: every change reaches the engine the way it would in production (Dataverse webhook steps,
// Marketo flow-action webhooks), and the tests look at both systems and the activity log.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;

describe.each(testEngines())('the sync engine on %s', (engine) => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService(engine);
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

  it('an edit made right after a new Dynamics record was created is not lost while the person is being created', async () => {
    const email = unique('quick');
    const created = t.dataverse.create('contact', { firstname: 'Quick', lastname: 'Edit', emailaddress1: email, jobtitle: 'First' });
    const id = String(created.contactid);
    await new Promise((resolve) => setTimeout(resolve, 5));
    t.dataverse.update('contact', id, { jobtitle: 'Second' });
    t.dataverse.update('contact', id, { address1_city: 'Quito' });
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: id } });
    expect(t.marketo.getLead(link.marketoId)).toMatchObject({ email, title: 'Second', city: 'Quito' });
    expect(t.marketo.listLeads({ limit: 100_000 }).filter((p) => p.email === email)).toHaveLength(1);
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

  it('replaying every webhook of a scenario changes no record and adds no activity', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.dataverse.update('contact', dynamicsId, { jobtitle: 'Replay me' });
    await t.settle();
    const activities = await t.service.db.prisma.activity.count();
    const record = t.dataverse.get('contact', dynamicsId);
    const person = t.marketo.getLead(marketoId);
    const deliveries = t.dataverse.webhookDeliveries().filter((d) => d.body.includes(dynamicsId));
    expect(deliveries.length).toBeGreaterThan(1);
    for (const delivery of deliveries) {
      const res = await t.http
        .post(new URL(delivery.url).pathname + new URL(delivery.url).search)
        .set('content-type', 'application/json')
        .send(delivery.body);
      expect([200, 202]).toContain(res.status);
      expect(['duplicate', 'ignored']).toContain(res.body.status);
    }
    await t.settle();
    expect(await t.service.db.prisma.activity.count()).toBe(activities);
    expect(t.dataverse.get('contact', dynamicsId)).toEqual(record);
    expect(t.marketo.getLead(marketoId)).toEqual(person);
  });
});
