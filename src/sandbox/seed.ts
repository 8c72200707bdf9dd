import type { Database } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import type { Sandbox } from './sandbox.ts';

// Sandbox demo data for `npm start` without credentials: a few dozen realistic people in both
// simulated systems, some linked by the initial sync (as Dynamics webhooks would link them), some
// Marketo-only persons waiting for "Sync Person to Microsoft". The simulators start empty on
// every run, so the sandbox database is reset with them (only a database this code marked as a
// sandbox database: data from a live run is never touched).

const SANDBOX_MARKER = 'sandbox.database';

type Person = { first: string; last: string; title: string; company: string; city: string; country: string; phone: string };

const people: Person[] = [
  { first: 'Amara', last: 'Okafor', title: 'Head of Procurement', company: 'Northwind Traders', city: 'Lagos', country: 'Nigeria', phone: '+234 1 555 0101' },
  { first: 'Lukas', last: 'Brenner', title: 'IT Director', company: 'Fabrikam GmbH', city: 'Munich', country: 'Germany', phone: '+49 89 555 0102' },
  { first: 'Sofia', last: 'Marchetti', title: 'CFO', company: 'Contoso Italia', city: 'Milan', country: 'Italy', phone: '+39 02 555 0103' },
  { first: 'Hiroshi', last: 'Tanaka', title: 'Plant Manager', company: 'Tailspin Toys KK', city: 'Osaka', country: 'Japan', phone: '+81 6 555 0104' },
  { first: 'Grace', last: 'Mwangi', title: 'Operations Lead', company: 'Wide World Importers', city: 'Nairobi', country: 'Kenya', phone: '+254 20 555 0105' },
  { first: 'Daniel', last: 'Kowalski', title: 'VP Engineering', company: 'Litware Inc.', city: 'Chicago', country: 'United States', phone: '+1 312 555 0106' },
  { first: 'Isabel', last: 'Ferreira', title: 'Marketing Manager', company: 'Adventure Works', city: 'Lisbon', country: 'Portugal', phone: '+351 21 555 0107' },
  { first: 'Noah', last: 'Lindqvist', title: 'Security Architect', company: 'Proseware AB', city: 'Stockholm', country: 'Sweden', phone: '+46 8 555 0108' },
  { first: 'Priya', last: 'Natarajan', title: 'Data Platform Lead', company: 'Coho Winery', city: 'Bengaluru', country: 'India', phone: '+91 80 555 0109' },
  { first: 'Mateo', last: 'Gonzalez', title: 'Purchasing Agent', company: 'Alpine Ski House', city: 'Madrid', country: 'Spain', phone: '+34 91 555 0110' },
  { first: 'Chloe', last: 'Dubois', title: 'Head of Sales', company: 'Trey Research', city: 'Lyon', country: 'France', phone: '+33 4 555 0111' },
  { first: 'Ethan', last: 'Walsh', title: 'Facilities Manager', company: 'Blue Yonder Airlines', city: 'Dublin', country: 'Ireland', phone: '+353 1 555 0112' },
  { first: 'Yara', last: 'Haddad', title: 'Product Owner', company: 'Relecloud', city: 'Beirut', country: 'Lebanon', phone: '+961 1 555 0113' },
  { first: 'Oliver', last: 'Bennett', title: 'Controller', company: 'Woodgrove Bank', city: 'London', country: 'United Kingdom', phone: '+44 20 5550 0114' },
  { first: 'Mei', last: 'Chen', title: 'Supply Chain Analyst', company: 'Lamna Healthcare', city: 'Singapore', country: 'Singapore', phone: '+65 6555 0115' },
  { first: 'Rafael', last: 'Souza', title: 'CTO', company: 'VanArsdel Ltd.', city: 'São Paulo', country: 'Brazil', phone: '+55 11 5555 0116' },
  { first: 'Hannah', last: 'Schmidt', title: 'HR Business Partner', company: 'Margie’s Travel', city: 'Vienna', country: 'Austria', phone: '+43 1 555 0117' },
  { first: 'Kwame', last: 'Mensah', title: 'Field Service Manager', company: 'Humongous Insurance', city: 'Accra', country: 'Ghana', phone: '+233 30 555 0118' },
  { first: 'Laura', last: 'Novak', title: 'Category Manager', company: 'Fourth Coffee', city: 'Prague', country: 'Czechia', phone: '+420 2 555 0119' },
  { first: 'Samuel', last: 'Cohen', title: 'General Counsel', company: 'Datum Corporation', city: 'Tel Aviv', country: 'Israel', phone: '+972 3 555 0120' },
  { first: 'Aisha', last: 'Rahman', title: 'Growth Marketer', company: 'Bellows College', city: 'Dhaka', country: 'Bangladesh', phone: '+880 2 555 0121' },
  { first: 'Jack', last: 'Thompson', title: 'Store Operations Director', company: 'The Phone Company', city: 'Sydney', country: 'Australia', phone: '+61 2 5550 0122' },
  { first: 'Elena', last: 'Petrova', title: 'Research Scientist', company: 'Graphic Design Institute', city: 'Sofia', country: 'Bulgaria', phone: '+359 2 555 0123' },
  { first: 'Tomás', last: 'Ortega', title: 'Logistics Coordinator', company: 'Southridge Video', city: 'Bogotá', country: 'Colombia', phone: '+57 1 555 0124' },
  { first: 'Freya', last: 'Jensen', title: 'Sustainability Officer', company: 'Consolidated Messenger', city: 'Copenhagen', country: 'Denmark', phone: '+45 33 55 01 25' },
  { first: 'Ibrahim', last: 'Diallo', title: 'Branch Manager', company: 'First Up Consultants', city: 'Dakar', country: 'Senegal', phone: '+221 33 555 0126' },
  { first: 'Zoe', last: 'Papadopoulos', title: 'Event Manager', company: 'Munson’s Pickles', city: 'Athens', country: 'Greece', phone: '+30 21 0555 0127' },
  { first: 'Arjun', last: 'Mehta', title: 'Solutions Engineer', company: 'Nod Publishers', city: 'Mumbai', country: 'India', phone: '+91 22 555 0128' },
  { first: 'Nina', last: 'Horvat', title: 'Finance Manager', company: 'Lucerne Publishing', city: 'Zagreb', country: 'Croatia', phone: '+385 1 555 0129' },
  { first: 'Lucas', last: 'Martin', title: 'Account Executive', company: 'Wingtip Toys', city: 'Montréal', country: 'Canada', phone: '+1 514 555 0130' },
  { first: 'Fatima', last: 'Zahra', title: 'Quality Manager', company: 'Best For You Organics', city: 'Casablanca', country: 'Morocco', phone: '+212 522 555 131' },
  { first: 'Henrik', last: 'Berg', title: 'Chief of Staff', company: 'Tailwind Traders', city: 'Oslo', country: 'Norway', phone: '+47 22 55 01 32' },
];

const emailOf = (p: Person) =>
  `${p.first}.${p.last}@${p.company.toLowerCase().replace(/[^a-z0-9]+/g, '')}.example.com`
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase();

export interface SeededRecord {
  name: string;
  email: string;
  marketoId: number | null;
  dynamicsId: string | null;
}

/** Sales users who own the seeded records: their name, email, phone and title show on the persons. */
const owners = [
  { firstname: 'Dana', lastname: 'Whitfield', title: 'Regional Sales Director', phone: '+1 206 555 0140' },
  { firstname: 'Kenji', lastname: 'Morales', title: 'Account Executive', phone: '+1 312 555 0141' },
  { firstname: 'Leila', lastname: 'Farouk', title: 'Sales Development Rep', phone: '+44 20 5550 0142' },
];

/** A few industries of the default option set (industrycode), shown on persons as labels. */
const industryCodes = [6, 7, 12, 16, 20, 30, 33];

export interface SandboxSeed {
  /** Dynamics contacts, linked to Marketo persons (some matched to existing persons by email) */
  contacts: SeededRecord[];
  /** Dynamics leads, linked to Marketo persons created by the initial sync */
  leads: SeededRecord[];
  /** Marketo persons with no Dynamics record: ready for Sync Person to Microsoft */
  marketoOnly: SeededRecord[];
  /** the contacts' parent accounts (their fields are the persons' company fields), by name */
  accounts: { name: string; accountId: string }[];
  /** the sales users owning the seeded leads and contacts */
  owners: { name: string; systemUserId: string }[];
  /** false when the initial sync did not finish within the wait (the service keeps working on it) */
  settled: boolean;
}

/**
 * Readies the database for a freshly started sandbox: `ready` when it is empty or a sandbox
 * database of an earlier run (whose rows described simulated records that are gone: cleared);
 * `foreign` when it holds data this code did not seed (then nothing is touched or seeded).
 */
export async function prepareSandboxDatabase(db: Database): Promise<'ready' | 'foreign'> {
  const prisma = db.prisma;
  const [marker, links, events] = await Promise.all([
    prisma.serviceSetting.findUnique({ where: { key: SANDBOX_MARKER } }),
    prisma.syncLink.count(),
    prisma.changeEvent.count(),
  ]);
  if (!marker && (links > 0 || events > 0)) return 'foreign';
  if (marker) {
    await clearSyncState(db);
  } else {
    await prisma.serviceSetting.create({ data: { key: SANDBOX_MARKER, value: 'simulated Marketo and Dynamics; cleared at each sandbox start' } });
  }
  return 'ready';
}

/** Everything the sync learnt about the simulators' records, gone with the records themselves. */
async function clearSyncState(db: Database): Promise<void> {
  const prisma = db.prisma;
  await prisma.$transaction([
    prisma.activity.deleteMany(),
    prisma.changeEvent.deleteMany(),
    prisma.syncLink.deleteMany(),
    prisma.syncRun.deleteMany(),
    prisma.syncCursor.deleteMany(),
    prisma.recordLock.deleteMany(),
    prisma.batchSync.deleteMany(),
  ]);
}

/**
 * A shared sandbox (SANDBOX_URL) starts empty with each of its instances: the first replica to see
 * a new instance clears the sandbox database (compare-and-set on the marker, so replicas starting
 * together clear it once); `foreign` as in prepareSandboxDatabase (then nothing is touched).
 */
export async function claimSharedSandboxDatabase(db: Database, instance: string): Promise<'cleared' | 'current' | 'foreign'> {
  const prisma = db.prisma;
  const value = `shared sandbox ${instance}; cleared when the sandbox restarts`;
  const [marker, links, events] = await Promise.all([
    prisma.serviceSetting.findUnique({ where: { key: SANDBOX_MARKER } }),
    prisma.syncLink.count(),
    prisma.changeEvent.count(),
  ]);
  if (!marker && (links > 0 || events > 0)) return 'foreign';
  if (!marker) {
    await prisma.serviceSetting.createMany({ data: [{ key: SANDBOX_MARKER, value }], skipDuplicates: true });
    return 'cleared';
  }
  if (marker.value === value) return 'current';
  const claimed = await prisma.serviceSetting.updateMany({ where: { key: SANDBOX_MARKER, value: marker.value }, data: { value } });
  if (claimed.count === 0) return 'current';
  await clearSyncState(db);
  return 'cleared';
}

/** The demo records, put into both simulators (Dynamics creates fire its registered webhook steps). */
export function fillSandbox(sandbox: Pick<Sandbox, 'marketo' | 'dataverse'>): Omit<SandboxSeed, 'settled'> {
  const marketo = sandbox.marketo.admin;
  const dataverse = sandbox.dataverse.admin;
  const name = (p: Person) => `${p.first} ${p.last}`;
  const contactsPeople = people.slice(0, 12);
  const leadPeople = people.slice(12, 22);
  const marketoOnlyPeople = people.slice(22);

  // Persons marketing already had before the CRM knew them: the initial sync matches them by email.
  const existing = new Map<string, number>();
  for (const p of contactsPeople.slice(0, 4)) {
    const lead = marketo.createLead({ email: emailOf(p), firstName: p.first, lastName: p.last, leadSource: 'Webinar' });
    existing.set(emailOf(p), lead.id);
  }
  const marketoOnly: SeededRecord[] = marketoOnlyPeople.map((p) => {
    const lead = marketo.createLead({
      email: emailOf(p),
      firstName: p.first,
      lastName: p.last,
      title: p.title,
      company: p.company,
      city: p.city,
      country: p.country,
      phone: p.phone,
      leadSource: 'Website',
    });
    return { name: name(p), email: emailOf(p), marketoId: lead.id, dynamicsId: null };
  });

  // The sales team and the accounts it works: a contact's account is its person's company.
  const seededOwners = owners.map((o) => ({
    name: `${o.firstname} ${o.lastname}`,
    systemUserId: dataverse.addUser({
      domainname: `${o.firstname}.${o.lastname}@contoso.example`.toLowerCase(),
      firstname: o.firstname,
      lastname: o.lastname,
      internalemailaddress: `${o.firstname}.${o.lastname}@contoso.example`.toLowerCase(),
      title: o.title,
      address1_telephone1: o.phone,
    }),
  }));
  const ownerBind = (i: number) => ({ 'ownerid@odata.bind': `/systemusers(${seededOwners[i % seededOwners.length]!.systemUserId})` });
  const accounts = contactsPeople.map((p, i) => ({
    name: p.company,
    accountId: String(
      dataverse.create('account', {
        name: p.company,
        websiteurl: `https://www.${p.company.toLowerCase().replace(/[^a-z0-9]+/g, '')}.example.com`.normalize('NFD').replace(/[\u0300-\u036f]/g, ''),
        telephone1: p.phone.replace(/\d{2}$/, '00'),
        industrycode: industryCodes[i % industryCodes.length],
        numberofemployees: 50 * (i + 1) * (i + 1),
        revenue: 1_000_000 * (i + 2),
        address1_city: p.city,
        address1_country: p.country,
        ...ownerBind(i),
      }).accountid,
    ),
  }));

  // Records sales created in Dynamics: each Create fires the registered webhook step.
  const contacts: SeededRecord[] = contactsPeople.map((p, i) => {
    const row = dataverse.create('contact', {
      firstname: p.first,
      lastname: p.last,
      emailaddress1: emailOf(p),
      jobtitle: p.title,
      telephone1: p.phone,
      address1_city: p.city,
      address1_country: p.country,
      'parentcustomerid_account@odata.bind': `/accounts(${accounts[i]!.accountId})`,
      ...ownerBind(i),
    });
    return { name: name(p), email: emailOf(p), marketoId: existing.get(emailOf(p)) ?? null, dynamicsId: String(row['contactid']) };
  });
  const leads: SeededRecord[] = leadPeople.map((p, i) => {
    const row = dataverse.create('lead', {
      firstname: p.first,
      lastname: p.last,
      emailaddress1: emailOf(p),
      jobtitle: p.title,
      companyname: p.company,
      telephone1: p.phone,
      address1_city: p.city,
      address1_country: p.country,
      ...ownerBind(i + 1),
    });
    return { name: name(p), email: emailOf(p), marketoId: null, dynamicsId: String(row['leadid']) };
  });
  return { contacts, leads, marketoOnly, accounts, owners: seededOwners };
}

/** Fills both simulators and waits (up to `waitMs`) until the initial sync linked every Dynamics record. */
export async function seedSandbox(options: { sandbox: Sandbox; db: Database; logger?: Logger; waitMs?: number }): Promise<SandboxSeed> {
  const { sandbox, db } = options;
  const dataverse = sandbox.dataverse.admin;
  const { contacts, leads, marketoOnly, accounts, owners } = fillSandbox(sandbox);
  const linked = [...contacts, ...leads];
  const deadline = Date.now() + (options.waitMs ?? 60_000);
  let settled = false;
  while (Date.now() < deadline) {
    await dataverse.flushWebhooks();
    const links = await db.prisma.syncLink.findMany({
      where: { dynamicsId: { in: linked.map((r) => r.dynamicsId!) } },
      select: { dynamicsId: true, marketoId: true },
    });
    for (const link of links) {
      const record = linked.find((r) => r.dynamicsId === link.dynamicsId);
      if (record) record.marketoId = link.marketoId;
    }
    if (links.length === linked.length) {
      settled = true;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (!settled) options.logger?.warn({ linked: linked.filter((r) => r.marketoId !== null).length, of: linked.length }, 'sandbox seed: the initial sync is still running');
  return { contacts, leads, marketoOnly, accounts, owners, settled };
}
