import type { Actor, FieldKind, FieldValue, SyncSide } from './oracle.ts';

// What the campaign knows: the field mapping as SPEC.md lists it, seeded randomness, its model of
// the linked pairs, and the intent log (every edit and every observed agreement, in one sequence).

export interface FieldSpec {
  canonical: string;
  marketo: string;
  dynamics: string;
  kind: FieldKind;
  leadOnly?: boolean;
}

export const fields: FieldSpec[] = [
  { canonical: 'email', marketo: 'email', dynamics: 'emailaddress1', kind: 'email' },
  { canonical: 'firstName', marketo: 'firstName', dynamics: 'firstname', kind: 'string' },
  { canonical: 'lastName', marketo: 'lastName', dynamics: 'lastname', kind: 'string' },
  { canonical: 'title', marketo: 'title', dynamics: 'jobtitle', kind: 'string' },
  { canonical: 'phone', marketo: 'phone', dynamics: 'telephone1', kind: 'string' },
  { canonical: 'mobilePhone', marketo: 'mobilePhone', dynamics: 'mobilephone', kind: 'string' },
  { canonical: 'company', marketo: 'company', dynamics: 'companyname', kind: 'string', leadOnly: true },
  { canonical: 'street', marketo: 'address', dynamics: 'address1_line1', kind: 'string' },
  { canonical: 'city', marketo: 'city', dynamics: 'address1_city', kind: 'string' },
  { canonical: 'state', marketo: 'state', dynamics: 'address1_stateorprovince', kind: 'string' },
  { canonical: 'postalCode', marketo: 'postalCode', dynamics: 'address1_postalcode', kind: 'string' },
  { canonical: 'country', marketo: 'country', dynamics: 'address1_country', kind: 'string' },
  { canonical: 'unsubscribed', marketo: 'unsubscribed', dynamics: 'donotbulkemail', kind: 'boolean' },
];
export const editable = fields.filter((f) => f.canonical !== 'email');
export const fieldOf = (canonical: string): FieldSpec => fields.find((f) => f.canonical === canonical)!;
export const fieldKinds: Record<string, FieldKind> = Object.fromEntries(fields.map((f) => [f.canonical, f.kind]));
export const fieldsOfEntity = (entity: Entity): FieldSpec[] => fields.filter((f) => !f.leadOnly || entity === 'lead');
/** a title Dynamics refuses on leads (a business rule registered by the campaign) */
export const REJECTED_PREFIX = 'REJECT';
/** the value the campaign's Dataverse plug-in rewrites, and what it rewrites it to */
export const PLUGIN_REWRITE = { column: 'address1_country', field: 'country', from: 'usa', to: 'United States' } as const;

export type Rng = ReturnType<typeof prng>;

/** mulberry32: one seed reproduces every choice the campaign makes (timing aside). */
export function prng(seed: number) {
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

export type Entity = 'lead' | 'contact';

export interface Pair {
  marketoId: number;
  entity: Entity;
  dynamicsId: string;
  email: string;
  state: 'active' | 'deleted_in_dynamics' | 'deleted_in_marketo';
  filteredOut: boolean;
  /** qualified this round: the link moves to the new contact (learnt after the round settles) */
  moving: boolean;
  /** the last round each canonical field was edited in (pairs are left alone while their edits sync) */
  editedIn: Map<string, number>;
  /** a race is working on this pair: regular edits leave it alone until the round settles */
  racing: boolean;
}

/** Which record an edit or an agreement is about; resolved to a person at the end. */
export type RecordRef = { marketoId: number } | { dynamicsId: string };

export interface LoggedEdit {
  seq: number;
  at: number;
  actor: Actor;
  side: SyncSide;
  record: RecordRef;
  field: string;
  value: FieldValue;
  race: string | null;
  what: string;
  /** a synchronous plug-in's rewrite: the value it replaced */
  rewrites?: FieldValue | undefined;
}

export interface LoggedAgreement {
  seq: number;
  at: number;
  record: RecordRef;
  field: string;
  value: FieldValue;
  how: string;
  /** seen the moment a sync's write landed */
  bySyncWrite?: boolean | undefined;
}

/** The campaign's intent log: one counter orders every edit and every observed agreement. */
export function createIntentLog() {
  let seq = 0;
  const edits: LoggedEdit[] = [];
  const agreements: LoggedAgreement[] = [];
  const races = new Map<string, number>();
  return {
    edits,
    agreements,
    races,
    edit(entry: Omit<LoggedEdit, 'seq' | 'at'>): LoggedEdit {
      const logged = { ...entry, seq: ++seq, at: Date.now() };
      edits.push(logged);
      return logged;
    },
    agreement(entry: Omit<LoggedAgreement, 'seq' | 'at'>): void {
      agreements.push({ ...entry, seq: ++seq, at: Date.now() });
    },
    /** counts one run of a race ingredient, by name, for the summary */
    raced(name: string): void {
      races.set(name, (races.get(name) ?? 0) + 1);
    },
  };
}
export type IntentLog = ReturnType<typeof createIntentLog>;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
