// The sync filter of an entity: a condition on one Dataverse column of the lead or contact, as an
// admin writes it (SYNC_FILTER_LEAD / SYNC_FILTER_CONTACT), like Marketo's custom sync filter. A
// record syncs while the condition holds; otherwise its link is FILTERED (updates stop, nothing is
// deleted) and the activity says "filtered out by <rule>". The default is Marketo's own filter:
// `new_synctomkto ne false` (missing, empty or Yes syncs; only an explicit No filters).
//
//   <column> eq|ne <value>       value: true | false | null | an integer | a GUID | 'text'
//   <column> in (<v1>, <v2>...)  one of the values
// A lookup is named by its property, e.g. `_owningbusinessunit_value eq <guid>`; a choice by its
// option value, e.g. `statuscode in (1, 2)`.

export type FilterValue = string | number | boolean | null;

export interface SyncFilterRule {
  /** the rule as the admin wrote it, for messages */
  text: string;
  /** the column or lookup property read */
  column: string;
  op: 'eq' | 'ne' | 'in';
  values: FilterValue[];
}

export const DEFAULT_SYNC_FILTER = 'new_synctomkto ne false';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function literal(raw: string): FilterValue | undefined {
  const text = raw.trim();
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text === 'null') return null;
  if (/^-?\d{1,15}$/.test(text)) return Number(text);
  if (GUID.test(text)) return text.toLowerCase();
  const quoted = /^'((?:[^']|'')*)'$/.exec(text);
  return quoted ? quoted[1]!.replaceAll("''", "'") : undefined;
}

/** The rule, or why the text is not one. */
export function parseSyncFilter(text: string): SyncFilterRule | { error: string } {
  const m = /^\s*(_?[a-z][a-z0-9_]*)\s+(eq|ne|in)\s+(.+?)\s*$/i.exec(text);
  if (!m) return { error: `"${text}": expected "<column> eq|ne <value>" or "<column> in (<values>)"` };
  const column = m[1]!.toLowerCase();
  const op = m[2]!.toLowerCase() as SyncFilterRule['op'];
  const rest = m[3]!;
  let raws: string[];
  if (op === 'in') {
    const list = /^\((.*)\)$/.exec(rest);
    if (!list) return { error: `"${text}": "in" takes a parenthesised list` };
    raws = list[1]!.match(/'(?:[^']|'')*'|[^,]+/g)?.map((v) => v.trim()).filter((v) => v !== '') ?? [];
    if (raws.length === 0) return { error: `"${text}": an empty list matches nothing` };
  } else raws = [rest];
  const values: FilterValue[] = [];
  for (const raw of raws) {
    const value = literal(raw);
    if (value === undefined) return { error: `"${text}": ${raw.trim()} is not true, false, null, an integer, a GUID or a 'quoted' text` };
    values.push(value);
  }
  return { text: text.trim(), column, op, values };
}

const same = (a: unknown, b: FilterValue): boolean => {
  if (a === undefined || a === null || a === '') return b === null;
  if (typeof a === 'string' && typeof b === 'string') return a.toLowerCase() === b.toLowerCase();
  return a === b;
};

/** Whether a record with these column values syncs. An unreadable or absent column reads as null. */
export function passesSyncFilter(rule: SyncFilterRule, values: Readonly<Record<string, unknown>>): boolean {
  const value = values[rule.column];
  const hit = rule.values.some((v) => same(value, v));
  return rule.op === 'ne' ? !hit : hit;
}
