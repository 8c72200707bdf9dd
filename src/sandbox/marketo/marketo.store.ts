import type { MarketoFieldDefinition } from './marketo.fields.ts';

/** Who made a change; decides the Reason/Source attributes of the activities it logs. */
export type MarketoChangeOrigin =
  | { kind: 'api'; user: string; method: string; requestId: string }
  | { kind: 'ui'; user: string }
  | { kind: 'webhook'; webhookName: string };

export type StoredLead = {
  id: number;
  createdAt: number;
  updatedAt: number;
  /** canonical values by REST name; absent = null */
  values: Record<string, unknown>;
};

export const ActivityType = {
  newLead: 12,
  changeDataValue: 13,
  mergeLeads: 32,
  deleteLead: 37,
  callWebhook: 110,
} as const;

export type StoredActivity = {
  id: number;
  leadId: number;
  at: number;
  typeId: number;
  origin: MarketoChangeOrigin;
  field?: { id: number; name: string; newValue: string | null; oldValue: string | null };
  primaryAttributeValueId?: number;
  primaryAttributeValue?: string;
  extraAttributes?: { name: string; value: string | number }[];
};

export type RecordReason = { code: string; message: string };

const DAY_MS = 86_400_000;
/** Nation KB retention: Delete Lead 14 days, Change Data Value 90 days, New Lead forever. */
const retentionMsByType: Partial<Record<number, number>> = {
  [ActivityType.deleteLead]: 14 * DAY_MS,
  [ActivityType.changeDataValue]: 90 * DAY_MS,
};

export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const printableAscii = /^[\x20-\x7e]*$/;

/** Validates a value the API or UI wants to write and returns its canonical form (null clears). */
export function coerceFieldValue(field: MarketoFieldDefinition, raw: unknown): { value: unknown } | { reason: RecordReason } {
  if (raw === null || raw === '') return { value: null };
  const invalid = { reason: { code: '1001', message: `Invalid value for field '${field.name}' of type ${field.dataType}` } };
  switch (field.dataType) {
    case 'string':
    case 'text':
    case 'phone':
    case 'url':
    case 'reference':
    case 'email': {
      if (typeof raw !== 'string') return invalid;
      if (field.dataType === 'email' && !printableAscii.test(raw)) return invalid;
      if (field.length !== undefined && raw.length > field.length) {
        return { reason: { code: '1001', message: `Value for field '${field.name}' exceeds ${field.length} characters` } };
      }
      return { value: raw };
    }
    case 'integer':
    case 'score': {
      if (typeof raw === 'number' && Number.isSafeInteger(raw)) return { value: raw };
      if (typeof raw === 'string' && /^-?\d{1,15}$/.test(raw)) return { value: Number(raw) };
      return invalid;
    }
    case 'float':
    case 'currency':
    case 'percent': {
      if (typeof raw === 'number' && Number.isFinite(raw)) return { value: raw };
      if (typeof raw === 'string' && raw.trim() !== '' && Number.isFinite(Number(raw))) return { value: Number(raw) };
      return invalid;
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return { value: raw };
      if (raw === 'true' || raw === 'false') return { value: raw === 'true' };
      return invalid;
    }
    case 'date': {
      if (typeof raw === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(raw) && !Number.isNaN(Date.parse(raw))) return { value: raw };
      return invalid;
    }
    case 'datetime': {
      if (typeof raw !== 'string') return invalid;
      const ms = Date.parse(raw);
      return Number.isNaN(ms) ? invalid : { value: isoSeconds(ms) };
    }
    case 'formula':
      return invalid;
  }
}

export function activityValue(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function indexKey(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  return (typeof value === 'string' ? value : activityValue(value) ?? '').toLowerCase();
}

export type FeedPage = { items: StoredActivity[]; nextPosition: number; moreResult: boolean };

export type MarketoStore = ReturnType<typeof createMarketoStore>;

export function createMarketoStore(options: { fields: readonly MarketoFieldDefinition[]; now: () => number }) {
  const fieldsByName = new Map(options.fields.map((f) => [f.name, f]));
  const fieldsBySoapName = new Map(options.fields.map((f) => [f.soapName.toLowerCase(), f]));
  const fieldsByDisplayName = new Map(options.fields.map((f) => [f.displayName.toLowerCase(), f]));
  const indexedFields = options.fields.filter((f) => f.searchable && f.name !== 'id').map((f) => f.name);

  let leads = new Map<number, StoredLead>();
  // searchable field -> lower-cased value -> lead ids; email lookups are case-insensitive
  let indexes = new Map<string, Map<string, number | number[]>>(indexedFields.map((name) => [name, new Map<string, number | number[]>()]));
  // append-only and ordered by time: position = array index, so a paging token is a position
  let activities: StoredActivity[] = [];
  let nextLeadId = 1;
  let lastAt = 0;
  /** in-process listeners told of each update that changed a value (a bench's arrival clock) */
  const changeListeners: ((id: number) => void)[] = [];

  function tick(): number {
    lastAt = Math.max(lastAt, options.now());
    return lastAt;
  }

  function indexAdd(field: string, value: unknown, id: number): void {
    const key = indexKey(value);
    const index = indexes.get(field);
    if (key === undefined || !index) return;
    const ids = index.get(key);
    // most keys map to one lead: a bare number keeps a million-lead index small
    if (ids === undefined) index.set(key, id);
    else if (typeof ids === 'number') index.set(key, [ids, id]);
    else ids.push(id);
  }

  function indexRemove(field: string, value: unknown, id: number): void {
    const key = indexKey(value);
    const index = indexes.get(field);
    if (key === undefined || !index) return;
    const ids = index.get(key);
    if (ids === undefined) return;
    const remaining = typeof ids === 'number' ? [ids].filter((x) => x !== id) : ids.filter((x) => x !== id);
    if (remaining.length === 0) index.delete(key);
    else index.set(key, remaining.length === 1 ? (remaining[0] ?? id) : remaining);
  }

  function appendActivity(activity: Omit<StoredActivity, 'id' | 'at'>): StoredActivity {
    const stored: StoredActivity = { ...activity, id: activities.length + 1, at: tick() };
    activities.push(stored);
    return stored;
  }

  function findBy(fieldName: string, value: unknown): number[] {
    if (fieldName === 'id') {
      const id = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
      return leads.has(id) ? [id] : [];
    }
    const key = indexKey(value);
    if (key === undefined) return [];
    const ids = indexes.get(fieldName)?.get(key);
    if (ids === undefined) return [];
    return typeof ids === 'number' ? [ids] : [...ids];
  }

  function create(values: Record<string, unknown>, origin: MarketoChangeOrigin, opts: { recordActivities?: boolean } = {}): StoredLead {
    const at = tick();
    const lead: StoredLead = { id: nextLeadId++, createdAt: at, updatedAt: at, values: {} };
    for (const [name, value] of Object.entries(values)) {
      if (value === null || value === undefined) continue;
      lead.values[name] = value;
      indexAdd(name, value, lead.id);
    }
    leads.set(lead.id, lead);
    if (opts.recordActivities !== false) {
      appendActivity({ leadId: lead.id, typeId: ActivityType.newLead, origin });
    }
    return lead;
  }

  /** Applies canonical values; logs one Change Data Value per field whose value really changed. */
  function update(id: number, values: Record<string, unknown>, origin: MarketoChangeOrigin): string[] {
    const lead = leads.get(id);
    if (!lead) return [];
    const changed: string[] = [];
    for (const [name, value] of Object.entries(values)) {
      const before = lead.values[name] ?? null;
      const after = value ?? null;
      if (before === after) continue;
      indexRemove(name, before, id);
      if (after === null) delete lead.values[name];
      else {
        lead.values[name] = after;
        indexAdd(name, after, id);
      }
      changed.push(name);
      const field = fieldsByName.get(name);
      appendActivity({
        leadId: id,
        typeId: ActivityType.changeDataValue,
        origin,
        field: { id: field?.id ?? 0, name, newValue: activityValue(after), oldValue: activityValue(before) },
        primaryAttributeValueId: field?.id ?? 0,
        primaryAttributeValue: field?.displayName ?? name,
      });
    }
    if (changed.length > 0) {
      lead.updatedAt = tick();
      for (const listener of changeListeners) listener(id);
    }
    return changed;
  }

  function remove(id: number, origin: MarketoChangeOrigin): boolean {
    const lead = leads.get(id);
    if (!lead) return false;
    for (const [name, value] of Object.entries(lead.values)) indexRemove(name, value, id);
    leads.delete(id);
    const fullName = [lead.values['firstName'], lead.values['lastName']].filter((x) => typeof x === 'string' && x !== '').join(' ');
    appendActivity({
      leadId: id,
      typeId: ActivityType.deleteLead,
      origin,
      primaryAttributeValueId: id,
      primaryAttributeValue: fullName,
    });
    return true;
  }

  /**
   * Merge Leads (reference marketo §11): on conflict the winner keeps its value, an empty winner
   * field takes a loser's; the losers are removed. One Merge Leads activity (type 32) is logged on
   * the winner with the losers' ids in "Merge IDs"; `loserDeleteActivities` also logs a Delete Lead
   * (type 37) per loser, so it shows in the deletedleads feed (unconfirmed in Adobe's docs: a switch).
   */
  function merge(winnerId: number, loserIds: readonly number[], origin: MarketoChangeOrigin, options: { loserDeleteActivities: boolean }): string[] {
    const winner = leads.get(winnerId);
    if (!winner) return [];
    const filled: Record<string, unknown> = {};
    for (const loserId of loserIds) {
      const loser = leads.get(loserId);
      if (!loser) continue;
      for (const [name, value] of Object.entries(loser.values)) {
        if (value === null || value === undefined) continue;
        if ((winner.values[name] ?? null) === null && !(name in filled)) filled[name] = value;
      }
    }
    for (const loserId of loserIds) {
      const loser = leads.get(loserId);
      if (!loser) continue;
      for (const [name, value] of Object.entries(loser.values)) indexRemove(name, value, loserId);
      leads.delete(loserId);
      if (options.loserDeleteActivities) {
        const fullName = [loser.values['firstName'], loser.values['lastName']].filter((x) => typeof x === 'string' && x !== '').join(' ');
        appendActivity({ leadId: loserId, typeId: ActivityType.deleteLead, origin, primaryAttributeValueId: loserId, primaryAttributeValue: fullName });
      }
    }
    const changed = update(winnerId, filled, origin);
    appendActivity({
      leadId: winnerId,
      typeId: ActivityType.mergeLeads,
      origin,
      primaryAttributeValueId: winnerId,
      primaryAttributeValue: String(winnerId),
      extraAttributes: [
        { name: 'Merge IDs', value: loserIds.join(',') },
        { name: 'Merge Fields', value: Object.keys(filled).join(',') },
      ],
    });
    return changed;
  }

  /** First position whose activity happened at or after `sinceMs` (binary search over the time-ordered log). */
  function positionAt(sinceMs: number): number {
    let lo = 0;
    let hi = activities.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((activities[mid]?.at ?? Infinity) < sinceMs) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Scans at most `scanBlock` log entries from `position`, like Marketo's block-wise activity scan:
   * sparse filters yield short or empty pages while `moreResult` stays true.
   */
  function feed(params: {
    position: number;
    sinceMs: number;
    batchSize: number;
    scanBlock: number;
    match: (activity: StoredActivity) => boolean;
  }): FeedPage {
    const now = options.now();
    const end = Math.min(activities.length, params.position + params.scanBlock);
    const items: StoredActivity[] = [];
    let i = params.position;
    for (; i < end && items.length < params.batchSize; i++) {
      const activity = activities[i];
      if (!activity || activity.at < params.sinceMs) continue;
      const retention = retentionMsByType[activity.typeId];
      if (retention !== undefined && activity.at < now - retention) continue;
      if (params.match(activity)) items.push(activity);
    }
    return { items, nextPosition: i, moreResult: i < activities.length };
  }

  return {
    fields: options.fields,
    field: (name: string) => fieldsByName.get(name),
    fieldBySoapName: (name: string) => fieldsBySoapName.get(name.toLowerCase()),
    fieldByDisplayName: (name: string) => fieldsByDisplayName.get(name.toLowerCase()),
    get: (id: number) => leads.get(id),
    leads: () => leads.values(),
    size: () => leads.size,
    findBy,
    create,
    update,
    remove,
    merge,
    appendActivity,
    onUpdate: (listener: (id: number) => void) => void changeListeners.push(listener),
    activityCount: () => activities.length,
    activitiesOf: (filter: { leadId?: number; typeIds?: number[] } = {}) =>
      activities.filter(
        (a) => (filter.leadId === undefined || a.leadId === filter.leadId) && (!filter.typeIds || filter.typeIds.includes(a.typeId)),
      ),
    positionAt,
    feed,
    reset(): void {
      leads = new Map();
      indexes = new Map(indexedFields.map((name) => [name, new Map<string, number | number[]>()]));
      activities = [];
      nextLeadId = 1;
    },
  };
}
