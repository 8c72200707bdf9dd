import { randomUUID } from 'node:crypto';
import { createSchema, defaultStatusFor, type SimTable } from './dataverse.metadata.ts';
import { convertPayload } from './dataverse.payload.ts';
import {
  SimHttpError,
  type AppliedRewrite,
  type BusinessRule,
  type ColumnGrant,
  type SimChange,
  type SimLookup,
  type SimRecord,
  type ValueRewrite,
  type WriteContext,
} from './dataverse.types.ts';

type LogEntry = { v: number; id: string };

export const defaultBusinessRules = (): BusinessRule[] => [
  { id: 'lead-lastname-required', table: 'lead', column: 'lastname', kind: 'required', message: 'Last Name is required to save a lead.' },
  { id: 'contact-lastname-required', table: 'contact', column: 'lastname', kind: 'required', message: 'Last Name is required to save a contact.' },
  { id: 'lead-email-valid', table: 'lead', column: 'emailaddress1', kind: 'email', message: 'Email: enter a valid email address (for example name@contoso.com).' },
  { id: 'contact-email-valid', table: 'contact', column: 'emailaddress1', kind: 'email', message: 'Email: enter a valid email address (for example name@contoso.com).' },
];

const emailRe = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

export class DataverseStore {
  readonly tables = createSchema();
  readonly records = new Map<string, Map<string, SimRecord>>();
  private readonly log = new Map<string, LogEntry[]>();
  private readonly tombstones = new Map<string, Map<string, number>>();
  /** Row versions are database-wide and only grow, like SQL rowversion. */
  version = 1_000_000;
  /** secured columns: "table.column" -> what the app (sync) user may do */
  readonly securedColumns = new Map<string, ColumnGrant>();
  rules: BusinessRule[] = defaultBusinessRules();
  rewrites: ValueRewrite[] = [];
  /** called (synchronously, before the row is stored) each time a rewrite changes a write */
  readonly rewriteListeners: ((applied: AppliedRewrite) => void)[] = [];
  /** tokens minted below this version are refused (admin "expire delta tokens", metadata changes) */
  readonly deltaFloor = new Map<string, number>();
  readonly changeTrackingEnabled = new Map<string, boolean>();
  /** bumped on every write; lets query caches know they are stale */
  mutations = 0;

  constructor(
    private readonly now: () => number,
    private readonly onChange: (change: SimChange) => void,
  ) {
    for (const name of this.tables.keys()) {
      this.records.set(name, new Map());
      this.log.set(name, []);
      this.tombstones.set(name, new Map());
      this.changeTrackingEnabled.set(name, name !== 'systemuser');
    }
  }

  table(name: string): SimTable {
    const t = this.tables.get(name);
    if (!t) throw new SimHttpError(404, '0x8006088a', `Resource not found for the segment '${name}'.`);
    return t;
  }

  tableBySet(set: string): SimTable | undefined {
    for (const t of this.tables.values()) if (t.entitySet === set) return t;
    return undefined;
  }

  rows(table: string): Map<string, SimRecord> {
    return this.records.get(table)!;
  }

  get(table: string, id: string): SimRecord | undefined {
    return this.rows(table).get(id.toLowerCase());
  }

  notFound(table: string, id: string): SimHttpError {
    return new SimHttpError(404, '0x80040217', `${table} With Id = ${id} Does Not Exist`);
  }

  canRead(t: SimTable, column: string, ctx: WriteContext): boolean {
    if (ctx.fullAccess) return true;
    const grant = this.securedColumns.get(`${t.logicalName}.${column}`);
    return grant === undefined || grant.read;
  }

  /** Converts a Web API JSON body into internal values, refusing what the real platform refuses. */
  convertPayload(t: SimTable, body: Record<string, unknown>, mode: 'create' | 'update', ctx: WriteContext): Record<string, unknown> {
    return convertPayload(this, t, body, mode, ctx);
  }

  private checkRules(t: SimTable, message: 'Create' | 'Update', merged: Record<string, unknown>, changed: Record<string, unknown>): void {
    for (const rule of this.rules) {
      if (rule.table !== t.logicalName) continue;
      if (rule.messages && !rule.messages.includes(message)) continue;
      if (message === 'Update' && !(rule.column in changed)) continue;
      const value = merged[rule.column];
      const empty = value === null || value === undefined || value === '';
      let broken = false;
      if (rule.kind === 'required') broken = empty;
      else if (!empty && typeof value === 'string') {
        broken = rule.kind === 'email' ? !emailRe.test(value) : !new RegExp(rule.pattern ?? '.*').test(value);
      }
      // a synchronous plug-in throwing InvalidPluginExecutionException surfaces as 400 0x80040265
      if (broken) throw new SimHttpError(400, '0x80040265', rule.message);
    }
  }

  /** Rewrites `changed` in place, as the plug-in would; what it did is told only once the write is stored (notifyRewrites). */
  private applyRewrites(t: SimTable, id: string, changed: Record<string, unknown>, ctx: WriteContext): AppliedRewrite[] {
    const applied: AppliedRewrite[] = [];
    for (const rewrite of this.rewrites) {
      if (rewrite.table !== t.logicalName) continue;
      const value = changed[rewrite.column];
      if (typeof value !== 'string' || value.trim().toLowerCase() !== rewrite.from.toLowerCase()) continue;
      changed[rewrite.column] = rewrite.to;
      applied.push({ rewriteId: rewrite.id, table: t.logicalName, id, column: rewrite.column, from: value, to: rewrite.to, userId: ctx.userId, at: this.now() });
    }
    return applied;
  }

  /** A refused write (duplicate key, business rule) rewrote nothing anyone will see: listeners hear only of stored ones. */
  private notifyRewrites(applied: readonly AppliedRewrite[]): void {
    for (const rewrite of applied) for (const listener of this.rewriteListeners) listener(rewrite);
  }

  private applyState(t: SimTable, merged: Record<string, unknown>, changed: Record<string, unknown>): void {
    if (!t.attributes.has('statecode')) return;
    if ('statecode' in changed && !('statuscode' in changed)) {
      merged.statuscode = defaultStatusFor(t, merged.statecode as number);
      changed.statuscode = merged.statuscode;
    }
    const status = t.attributes.get('statuscode')?.options?.find((o) => o.value === merged.statuscode);
    if (status && status.state !== merged.statecode) {
      throw new SimHttpError(
        400,
        '0x80040203',
        `${String(merged.statuscode)} is not a valid status code for state code ${t.displayName}State.${String(merged.statecode)} on ${t.logicalName}.`,
      );
    }
  }

  private bump(t: SimTable, rec: SimRecord): void {
    this.version += 1;
    this.mutations += 1;
    rec.versionnumber = this.version;
    const log = this.log.get(t.logicalName)!;
    log.push({ v: this.version, id: rec.id });
    const live = this.rows(t.logicalName).size + this.tombstones.get(t.logicalName)!.size;
    if (log.length > 2 * live + 1024) this.compact(t.logicalName);
  }

  private compact(table: string): void {
    const rows = this.rows(table);
    const tomb = this.tombstones.get(table)!;
    const kept = this.log.get(table)!.filter((e) => rows.get(e.id)?.versionnumber === e.v || tomb.get(e.id) === e.v);
    this.log.set(table, kept);
  }

  private computed(t: SimTable, values: Record<string, unknown>): void {
    if (t.attributes.has('fullname') && t.attributes.has('firstname')) {
      values.fullname = [values.firstname, values.lastname].filter((v) => typeof v === 'string' && v !== '').join(' ') || null;
    }
  }

  // ---- writes ------------------------------------------------------------------------------------
  create(tableName: string, body: Record<string, unknown>, ctx: WriteContext, options: { emit?: boolean } = {}): SimRecord {
    const t = this.table(tableName);
    const changed = this.convertPayload(t, body, 'create', ctx);
    const id = (changed[t.primaryKey] as string | undefined) ?? randomUUID();
    delete changed[t.primaryKey];
    const rewritten = this.applyRewrites(t, id, changed, ctx);
    if (this.get(tableName, id)) throw new SimHttpError(412, '0x80040237', 'Cannot insert duplicate key.');
    const at = wholeSeconds(this.now());
    const user: SimLookup = { id: ctx.userId, logicalName: 'systemuser' };
    const values: Record<string, unknown> = { ...changed };
    if (t.attributes.has('statecode')) {
      values.statecode ??= 0;
      values.statuscode ??= defaultStatusFor(t, values.statecode as number);
    }
    if (t.attributes.has('ownerid')) values.ownerid ??= user;
    this.applyState(t, values, changed);
    this.computed(t, values);
    this.checkRules(t, 'Create', values, changed);
    values.createdon = at;
    values.modifiedon = at;
    values.createdby = user;
    values.modifiedby = user;
    const rec: SimRecord = { id, table: tableName, values, versionnumber: 0 };
    this.rows(tableName).set(id, rec);
    this.tombstones.get(tableName)!.delete(id);
    this.bump(t, rec);
    this.notifyRewrites(rewritten);
    if (options.emit !== false) {
      const all: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(values)) if (v !== null && v !== undefined) all[k] = v;
      this.onChange({ message: 'Create', table: t, id, changed: all, record: rec, userId: ctx.userId, remotePort: ctx.remotePort, depth: ctx.depth, at });
    }
    return rec;
  }

  update(tableName: string, id: string, body: Record<string, unknown>, ctx: WriteContext): SimRecord {
    const t = this.table(tableName);
    const rec = this.get(tableName, id);
    if (!rec) throw this.notFound(tableName, id);
    const changed = this.convertPayload(t, body, 'update', ctx);
    const rewritten = this.applyRewrites(t, rec.id, changed, ctx);
    const merged = { ...rec.values, ...changed };
    this.applyState(t, merged, changed);
    this.computed(t, merged);
    this.checkRules(t, 'Update', merged, changed);
    const at = wholeSeconds(this.now());
    merged.modifiedon = at;
    merged.modifiedby = { id: ctx.userId, logicalName: 'systemuser' } satisfies SimLookup;
    rec.values = merged;
    this.bump(t, rec);
    this.notifyRewrites(rewritten);
    // sending unchanged values still counts as a change and fires steps (reference §2.4)
    const target: Record<string, unknown> = { ...changed };
    if ('firstname' in changed || 'lastname' in changed) target.fullname = merged.fullname;
    this.onChange({ message: 'Update', table: t, id: rec.id, changed: target, record: rec, userId: ctx.userId, remotePort: ctx.remotePort, depth: ctx.depth, at });
    return rec;
  }

  delete(tableName: string, id: string, ctx: WriteContext): void {
    const t = this.table(tableName);
    const rec = this.get(tableName, id);
    if (!rec) throw this.notFound(tableName, id);
    if (t.logicalName === 'account') {
      // contact_customer_accounts: Delete = Cascade, the account's contacts go with it (reference §10)
      for (const contact of [...this.rows('contact').values()]) {
        const parent = contact.values.parentcustomerid as SimLookup | undefined;
        if (parent?.logicalName === 'account' && parent.id === rec.id) this.delete('contact', contact.id, ctx);
      }
    }
    this.rows(tableName).delete(rec.id);
    this.version += 1;
    this.mutations += 1;
    this.tombstones.get(tableName)!.set(rec.id, this.version);
    this.log.get(tableName)!.push({ v: this.version, id: rec.id });
    this.onChange({ message: 'Delete', table: t, id: rec.id, changed: {}, record: undefined, userId: ctx.userId, remotePort: ctx.remotePort, depth: ctx.depth, at: wholeSeconds(this.now()) });
  }

  /** Writes internal values the platform sets itself (Merge): no payload checks, no webhook step. */
  private writeInternal(t: SimTable, rec: SimRecord, values: Record<string, unknown>, ctx: WriteContext): void {
    const merged = { ...rec.values, ...values };
    this.computed(t, merged);
    merged.modifiedon = wholeSeconds(this.now());
    merged.modifiedby = { id: ctx.userId, logicalName: 'systemuser' } satisfies SimLookup;
    rec.values = merged;
    this.bump(t, rec);
  }

  /**
   * The Merge action (reference dataverse §13): the subordinate's values fill the target's empty
   * columns, `UpdateContent` is written to the target, the subordinate is deactivated with
   * `masterid` -> target and `merged` = true (not deleted), and an account's contacts move to the
   * target (contact_customer_accounts: Merge = Cascade). Only a step registered on Merge hears of
   * it: whether Update steps fire for the internal writes is unconfirmed, so none do here.
   */
  merge(
    tableName: string,
    targetId: string,
    subordinateId: string,
    updateContent: Record<string, unknown>,
    performParentingChecks: boolean,
    ctx: WriteContext,
  ): SimRecord {
    const t = this.table(tableName);
    if (!['lead', 'contact', 'account'].includes(t.logicalName)) {
      throw new SimHttpError(400, '0x80040203', `Merge is not supported for entity ${t.logicalName}.`);
    }
    const target = this.get(tableName, targetId);
    if (!target) throw this.notFound(tableName, targetId);
    const subordinate = this.get(tableName, subordinateId);
    if (!subordinate) throw this.notFound(tableName, subordinateId);
    if (target.id === subordinate.id) throw new SimHttpError(400, '0x80040203', 'Cannot merge a record with itself.');
    for (const row of [target, subordinate]) {
      if (row.values.statecode !== 0) throw new SimHttpError(400, '0x80040203', `sub-entity:${t.logicalName} with id ${row.id} is deactive; only active records can be merged.`);
    }
    if (performParentingChecks) {
      const parent = (r: SimRecord) => (r.values.parentcustomerid as SimLookup | undefined)?.id ?? (r.values.parentaccountid as SimLookup | undefined)?.id ?? null;
      if (parent(target) !== parent(subordinate)) throw new SimHttpError(400, '0x80040203', 'The records have different parents; parenting checks failed.');
    }
    const content = this.convertPayload(t, updateContent, 'update', ctx);
    const system = new Set([t.primaryKey, 'statecode', 'statuscode', 'ownerid', 'createdon', 'modifiedon', 'createdby', 'modifiedby', 'versionnumber', 'masterid', 'merged', 'fullname']);
    const filled: Record<string, unknown> = {};
    for (const [column, value] of Object.entries(subordinate.values)) {
      if (system.has(column) || value === null || value === undefined) continue;
      const current = target.values[column];
      if (current === null || current === undefined || current === '') filled[column] = value;
    }
    this.writeInternal(t, target, { ...filled, ...content }, ctx);
    const inactive = t.logicalName === 'lead' ? 2 : 1;
    this.writeInternal(t, subordinate, { statecode: inactive, statuscode: defaultStatusFor(t, inactive), masterid: { id: target.id, logicalName: t.logicalName } satisfies SimLookup, merged: true }, ctx);
    if (t.logicalName === 'account') {
      const contacts = this.table('contact');
      for (const contact of this.rows('contact').values()) {
        const parent = contact.values.parentcustomerid as SimLookup | undefined;
        if (parent?.logicalName === 'account' && parent.id === subordinate.id) this.writeInternal(contacts, contact, { parentcustomerid: { id: target.id, logicalName: 'account' } }, ctx);
      }
    }
    this.onChange({
      message: 'Merge',
      table: t,
      id: target.id,
      changed: content,
      record: target,
      userId: ctx.userId,
      remotePort: ctx.remotePort,
      depth: ctx.depth,
      at: wholeSeconds(this.now()),
      merge: { subordinateId: subordinate.id, updateContent: content, performParentingChecks },
    });
    return target;
  }

  /** QualifyLead with CreateContact: the contact carries originatingleadid; the lead becomes Qualified. */
  qualifyLead(leadId: string, ctx: WriteContext): SimRecord {
    const lead = this.get('lead', leadId);
    if (!lead) throw this.notFound('lead', leadId);
    if (lead.values.statecode !== 0) {
      throw new SimHttpError(400, '0x80040203', 'The lead is closed. You cannot convert or qualify a lead that is already closed.');
    }
    const copy: Record<string, unknown> = {};
    for (const column of ['firstname', 'lastname', 'emailaddress1', 'jobtitle', 'telephone1', 'mobilephone', 'address1_line1', 'address1_city', 'address1_stateorprovince', 'address1_postalcode', 'address1_country', 'donotbulkemail', 'new_synctomkto', 'description']) {
      const v = lead.values[column];
      if (v !== null && v !== undefined) copy[column] = v;
    }
    copy['originatingleadid@odata.bind'] = `/leads(${lead.id})`;
    const owner = lead.values.ownerid as SimLookup | undefined;
    if (owner) copy['ownerid@odata.bind'] = `/systemusers(${owner.id})`;
    const contact = this.create('contact', copy, ctx);
    this.update('lead', lead.id, { statecode: 1, statuscode: 3 }, ctx);
    return contact;
  }

  /** Bulk load for benchmarks: no webhooks, no business rules. */
  bulkInsert(tableName: string, rows: Record<string, unknown>[], userId: string): number {
    const t = this.table(tableName);
    const at = wholeSeconds(this.now());
    const user: SimLookup = { id: userId, logicalName: 'systemuser' };
    for (const body of rows) {
      const values = this.convertPayload(t, body, 'create', { userId, fullAccess: true });
      const id = (values[t.primaryKey] as string | undefined) ?? randomUUID();
      delete values[t.primaryKey];
      if (t.attributes.has('statecode')) {
        values.statecode ??= 0;
        values.statuscode ??= defaultStatusFor(t, values.statecode as number);
      }
      if (t.attributes.has('ownerid')) values.ownerid ??= user;
      this.computed(t, values);
      Object.assign(values, { createdon: at, modifiedon: at, createdby: user, modifiedby: user });
      const rec: SimRecord = { id, table: tableName, values, versionnumber: 0 };
      this.rows(tableName).set(id, rec);
      this.bump(t, rec);
    }
    return rows.length;
  }

  /** Rows and deletions with version in (since, upTo], updates first by version, then deletes. */
  changesBetween(table: string, since: number, upTo: number): { upserts: SimRecord[]; deleted: string[] } {
    const log = this.log.get(table)!;
    let lo = 0;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (log[mid]!.v <= since) lo = mid + 1;
      else hi = mid;
    }
    const rows = this.rows(table);
    const tomb = this.tombstones.get(table)!;
    const upserts: SimRecord[] = [];
    const deleted: string[] = [];
    for (let i = lo; i < log.length; i += 1) {
      const e = log[i]!;
      if (e.v > upTo) break;
      const rec = rows.get(e.id);
      if (rec?.versionnumber === e.v) upserts.push(rec);
      else if (!rec && tomb.get(e.id) === e.v) deleted.push(e.id);
    }
    return { upserts, deleted };
  }

  reset(): void {
    for (const name of this.tables.keys()) {
      if (name === 'systemuser') continue;
      this.rows(name).clear();
      this.log.set(name, []);
      this.tombstones.get(name)!.clear();
      this.changeTrackingEnabled.set(name, true);
      this.deltaFloor.delete(name);
    }
    this.securedColumns.clear();
    this.rules = defaultBusinessRules();
    this.rewrites = [];
    this.mutations += 1;
  }
}
