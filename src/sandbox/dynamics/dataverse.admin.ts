// The admin side of the simulator: what a UI user, a test or the sandbox console does to it, in
// process (createAdmin) or over JSON under /__admin (createAdminRouter).
import { randomUUID } from 'node:crypto';
import express, { type Request, type Response } from 'express';
import type { SimTable } from './dataverse.metadata.ts';
import {
  SimHttpError,
  type AppliedRewrite,
  type BusinessRule,
  type ColumnGrant,
  type SimChange,
  type SimRecord,
  type ValueRewrite,
  type WriteContext,
} from './dataverse.types.ts';
import type { WebhookDelivery, WebhookRegistration } from './webhook.emitter.ts';
import type { DataverseSimulatorState, EndpointCounter, SimFault } from './dataverse.state.ts';
import { sendError, serialize } from './dataverse.wire.ts';
import type { DuplicateRule } from './duplicate-detection.ts';

export type DataverseSimulatorAdmin = ReturnType<typeof createAdmin>;

export function createAdmin(state: DataverseSimulatorState) {
  const store = state.store;
  const asUser = (userId?: string, depth?: number): WriteContext => ({ userId: (userId ?? state.config.uiUserId).toLowerCase(), fullAccess: true, ...(depth ? { depth } : {}) });
  const plain = (t: SimTable, rec: SimRecord): Record<string, unknown> =>
    serialize(state, t, rec, null, { userId: state.config.uiUserId, fullAccess: true });
  return {
    /** creates a row as the UI user (or `asUserId`): fires webhooks, business rules apply; returns the Web API row */
    create(table: string, values: Record<string, unknown>, asUserId?: string): Record<string, unknown> {
      return plain(store.table(table), store.create(table, values, asUser(asUserId)));
    },
    /** `depth` 2 or more: the write of a plug-in step another operation triggered (its webhook says so in Depth) */
    update(table: string, id: string, values: Record<string, unknown>, asUserId?: string, depth?: number): Record<string, unknown> {
      return plain(store.table(table), store.update(table, id, values, asUser(asUserId, depth)));
    },
    delete(table: string, id: string, asUserId?: string): void {
      store.delete(table, id, asUser(asUserId));
    },
    /** QualifyLead with CreateContact; returns the new contact row */
    qualifyLead(leadId: string, asUserId?: string): Record<string, unknown> {
      return plain(store.table('contact'), store.qualifyLead(leadId, asUser(asUserId)));
    },
    /** a user merges two rows (the Merge action): the subordinate is deactivated, the target survives */
    merge(table: string, targetId: string, subordinateId: string, updateContent: Record<string, unknown> = {}, asUserId?: string): Record<string, unknown> {
      return plain(store.table(table), store.merge(table, targetId, subordinateId, updateContent, false, asUser(asUserId)));
    },
    get(table: string, id: string): Record<string, unknown> | null {
      const rec = store.get(table, id);
      return rec ? plain(store.table(table), rec) : null;
    },
    list(table: string): Record<string, unknown>[] {
      const t = store.table(table);
      return [...store.rows(table).values()].map((rec) => plain(t, rec));
    },
    count(table: string): number {
      return store.rows(table).size;
    },
    /** benchmark seeding: no webhooks, no business rules */
    bulkInsert(table: string, rows: Record<string, unknown>[]): number {
      return store.bulkInsert(table, rows, state.config.uiUserId);
    },
    addUser(user: {
      domainname: string;
      firstname?: string;
      lastname?: string;
      systemuserid?: string;
      internalemailaddress?: string;
      title?: string;
      jobtitle?: string;
      address1_telephone1?: string;
      mobilephone?: string;
    }): string {
      const id = (user.systemuserid ?? randomUUID()).toLowerCase();
      store.bulkInsert('systemuser', [{ ...user, systemuserid: id }], state.config.uiUserId);
      return id;
    },
    registerWebhook(registration: Partial<WebhookRegistration> & { url: string }): WebhookRegistration {
      return state.webhooks.register(registration);
    },
    unregisterWebhook(id: string): boolean {
      return state.webhooks.unregister(id);
    },
    webhooks(): WebhookRegistration[] {
      return [...state.webhooks.registrations];
    },
    webhookDeliveries(): WebhookDelivery[] {
      return [...state.webhooks.deliveries];
    },
    flushWebhooks(): Promise<void> {
      return state.webhooks.flush();
    },
    /** secures a column; the app user gets only the grants given (default none) */
    secureColumn(table: string, column: string, grant: Partial<ColumnGrant> = {}): void {
      if (!store.table(table).attributes.has(column)) throw new Error(`Unknown column ${table}.${column}`);
      store.securedColumns.set(`${table}.${column}`, { read: grant.read ?? false, create: grant.create ?? false, update: grant.update ?? false });
    },
    unsecureColumn(table: string, column: string): void {
      store.securedColumns.delete(`${table}.${column}`);
    },
    businessRules(): BusinessRule[] {
      return [...store.rules];
    },
    addBusinessRule(rule: Omit<BusinessRule, 'id'> & { id?: string }): BusinessRule {
      const full: BusinessRule = { ...rule, id: rule.id ?? randomUUID() };
      store.rules.push(full);
      return full;
    },
    removeBusinessRule(id: string): boolean {
      const before = store.rules.length;
      store.rules = store.rules.filter((r) => r.id !== id);
      return store.rules.length !== before;
    },
    /** registers a plug-in that rewrites a value on every write (see ValueRewrite) */
    addValueRewrite(rewrite: Omit<ValueRewrite, 'id'> & { id?: string }): ValueRewrite {
      const full: ValueRewrite = { ...rewrite, id: rewrite.id ?? randomUUID() };
      store.rewrites.push(full);
      return full;
    },
    removeValueRewrite(id: string): boolean {
      const before = store.rewrites.length;
      store.rewrites = store.rewrites.filter((r) => r.id !== id);
      return store.rewrites.length !== before;
    },
    /** in-process only: hears of each stored create, update and delete, as webhooks do (a bench's arrival clock) */
    onRecordChanged(listener: (table: string, id: string) => void): void {
      state.changeListeners.push(listener);
    },
    /** in-process only: hears each rewrite as it happens (a test's edit log) */
    onValueRewrite(listener: (applied: AppliedRewrite) => void): void {
      store.rewriteListeners.push(listener);
    },
    /** every delta token issued so far for the table(s) answers 0x80044352 */
    expireDeltaTokens(table?: string): void {
      for (const name of table ? [table] : ['lead', 'contact', 'account']) store.deltaFloor.set(name, store.version + 1);
    },
    setChangeTracking(table: string, enabled: boolean): void {
      store.table(table);
      store.changeTrackingEnabled.set(table, enabled);
    },
    /** revokes every access token: the next call answers 401 until a new token is fetched */
    expireAccessTokens(): void {
      state.tokens.clear();
    },
    setTokenLifetime(seconds: number): void {
      state.config.tokenLifetimeSeconds = seconds;
    },
    setLimits(limits: Partial<typeof state.config.limits>): void {
      Object.assign(state.config.limits, limits);
      state.requestLog.clear();
      state.executionLog.clear();
    },
    /** per-request latency and per-operation execution time inside a $batch */
    setTiming(timing: Partial<typeof state.config.timing>): void {
      Object.assign(state.config.timing, timing);
    },
    injectFault(fault: SimFault): void {
      if (fault.kind === 'lost_answer') state.lostAnswers.push({ ...fault });
      else state.faults.push({ ...fault });
    },
    clearFaults(): void {
      state.faults.length = 0;
      state.lostAnswers.length = 0;
    },
    /** in-process only: hears each injected fault at the moment it takes effect */
    onFault(listener: (fault: SimFault) => void): void {
      state.faultListeners.push(listener);
    },
    /** in-process only: hears each committed create, update and delete with who made it and from which port */
    onWrite(listener: (change: SimChange) => void): void {
      state.writeListeners.push(listener);
    },
    stats(): Record<string, EndpointCounter> {
      return Object.fromEntries([...state.counters].map(([k, v]) => [k, { calls: v.calls, byStatus: { ...v.byStatus } }]));
    },
    resetStats(): void {
      state.counters.clear();
    },
    /** drops rows, rules, secured columns, faults, webhooks and counters; users and credentials stay */
    /** the published duplicate rules (defaults: leads and contacts by email, accounts by name) */
    setDuplicateRules(rules: readonly DuplicateRule[]): void {
      state.duplicates.setRules(rules);
    },
    /** the HTTP status of a duplicate refusal: 500 as Microsoft's example (default) or 412 as its status table */
    setDuplicateStatus(status: 500 | 412): void {
      state.duplicates.setStatus(status);
    },
    reset(): void {
      store.reset();
      state.duplicates.reset();
      state.faults.length = 0;
      state.lostAnswers.length = 0;
      state.counters.clear();
      state.requestLog.clear();
      state.executionLog.clear();
      state.queryCache.clear();
      state.webhooks.registrations = [];
      state.webhooks.deliveries.length = 0;
    },
  };
}

export function createAdminRouter(state: DataverseSimulatorState): express.Router {
  const router = express.Router();
  const admin = createAdmin(state);
  const wrap = (fn: (req: Request) => unknown) => async (req: Request, res: Response) => {
    try {
      const result = await fn(req);
      if (result === undefined) res.status(204).end();
      else res.status(200).json(result);
    } catch (error) {
      if (error instanceof SimHttpError) sendError(res, error);
      else res.status(400).json({ error: { code: '', message: error instanceof Error ? error.message : String(error) } });
    }
  };
  const body = (req: Request) => (req.body ?? {}) as Record<string, unknown>;
  const p = (req: Request, name: string) => String(req.params[name]);
  router.get('/records/:table', wrap((req) => admin.list(p(req, 'table'))));
  router.get('/records/:table/:id', wrap((req) => admin.get(p(req, 'table'), p(req, 'id')) ?? Promise.reject(new SimHttpError(404, '0x80040217', 'Does Not Exist'))));
  router.post('/records/:table', wrap((req) => admin.create(p(req, 'table'), body(req))));
  router.patch('/records/:table/:id', wrap((req) => admin.update(p(req, 'table'), p(req, 'id'), body(req))));
  router.delete('/records/:table/:id', wrap((req) => admin.delete(p(req, 'table'), p(req, 'id'))));
  router.post('/leads/:id/qualify', wrap((req) => admin.qualifyLead(p(req, 'id'))));
  router.post('/merge/:table', wrap((req) => {
    const b = body(req);
    return admin.merge(p(req, 'table'), String(b.targetId), String(b.subordinateId), (b.updateContent as Record<string, unknown> | undefined) ?? {});
  }));
  router.get('/webhooks', wrap(() => admin.webhooks()));
  router.post('/webhooks', wrap((req) => admin.registerWebhook(body(req) as Partial<WebhookRegistration> & { url: string })));
  router.delete('/webhooks/:id', wrap((req) => ({ removed: admin.unregisterWebhook(p(req, 'id')) })));
  router.get('/webhook-deliveries', wrap(() => admin.webhookDeliveries()));
  router.post('/secured-columns', wrap((req) => {
    const b = body(req) as { table: string; column: string } & Partial<ColumnGrant>;
    admin.secureColumn(b.table, b.column, b);
  }));
  router.delete('/secured-columns/:table/:column', wrap((req) => admin.unsecureColumn(p(req, 'table'), p(req, 'column'))));
  router.get('/business-rules', wrap(() => admin.businessRules()));
  router.post('/business-rules', wrap((req) => admin.addBusinessRule(body(req) as Omit<BusinessRule, 'id'>)));
  router.delete('/business-rules/:id', wrap((req) => ({ removed: admin.removeBusinessRule(p(req, 'id')) })));
  router.get('/value-rewrites', wrap(() => state.store.rewrites));
  router.post('/value-rewrites', wrap((req) => admin.addValueRewrite(body(req) as Omit<ValueRewrite, 'id'>)));
  router.delete('/value-rewrites/:id', wrap((req) => ({ removed: admin.removeValueRewrite(p(req, 'id')) })));
  router.post('/delta-tokens/expire', wrap((req) => admin.expireDeltaTokens(body(req).table as string | undefined)));
  router.post('/change-tracking', wrap((req) => admin.setChangeTracking(String(body(req).table), body(req).enabled === true)));
  router.post('/access-tokens/expire', wrap(() => admin.expireAccessTokens()));
  router.post('/limits', wrap((req) => admin.setLimits(body(req))));
  router.post('/faults', wrap((req) => admin.injectFault(body(req) as SimFault)));
  router.delete('/faults', wrap(() => admin.clearFaults()));
  router.get('/stats', wrap(() => admin.stats()));
  router.post('/reset', wrap(() => admin.reset()));
  return router;
}
