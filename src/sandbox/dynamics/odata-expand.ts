import type { SimAttribute, SimTable } from './dataverse.metadata.ts';
import { isLookup } from './dataverse.metadata.ts';
import type { SimLookup, SimRecord } from './dataverse.types.ts';
import { ODataQueryError, resolveProperty } from './odata-query.ts';

// `$expand` of single-valued navigation properties (reference dataverse §11, §12): a row carries
// the related row under the navigation property's name, with the columns its nested `$select`
// names and the related table's key always included, or null when the lookup is empty or points at
// another table (a contact's `parentcustomerid_account` when the parent is a contact). Collection-
// valued navigation properties are not modelled: the sync never reads them.

export type ExpandSpec = {
  navigation: string;
  /** the lookup column behind the navigation property */
  attribute: SimAttribute;
  target: SimTable;
  select: SimAttribute[] | null;
};

/** The row a lookup column holds: `owninguser` is derived from an owner that is a user. */
export function lookupValue(rec: SimRecord, attr: SimAttribute): SimLookup | null {
  if (attr.logicalName === 'owninguser') {
    const owner = (rec.values.ownerid as SimLookup | null | undefined) ?? null;
    return owner?.logicalName === 'systemuser' ? owner : null;
  }
  return (rec.values[attr.logicalName] as SimLookup | null | undefined) ?? null;
}

/** Top-level items of an `$expand` value: commas inside a nested option list do not split. */
function items(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out.map((s) => s.trim());
}

function parseItem(t: SimTable, item: string, table: (name: string) => SimTable): ExpandSpec {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?$/.exec(item);
  if (!m) throw new ODataQueryError(`Syntax error in $expand: '${item}'.`);
  const navigation = m[1]!;
  const attribute = [...t.attributes.values()].find((a) => isLookup(a) && a.validForRead && a.navigation?.[navigation] !== undefined);
  if (!attribute) throw new ODataQueryError(`Could not find a property named '${navigation}' on type 'Microsoft.Dynamics.CRM.${t.logicalName}'.`);
  const target = table(attribute.navigation![navigation]!);
  let select: SimAttribute[] | null = null;
  for (const option of (m[2] ?? '').split(';').map((o) => o.trim()).filter((o) => o !== '')) {
    const [name, value] = option.split('=', 2).map((s) => s.trim());
    if (name !== '$select' || value === undefined) {
      throw new ODataQueryError(`The query option '${name}' is not supported inside $expand of the single-valued navigation property '${navigation}'.`);
    }
    select = value.split(',').map((column) => resolveProperty(target, column.trim(), true));
  }
  return { navigation, attribute, target, select };
}

export function parseExpand(t: SimTable, text: string | null, table: (name: string) => SimTable): ExpandSpec[] {
  if (text === null || text.trim() === '') return [];
  return items(text).map((item) => parseItem(t, item, table));
}

/** The related row an expansion shows for `rec`, or null. */
export function expandedRecord(spec: ExpandSpec, rec: SimRecord, get: (table: string, id: string) => SimRecord | undefined): SimRecord | null {
  const ref = lookupValue(rec, spec.attribute);
  if (!ref || ref.logicalName !== spec.target.logicalName) return null;
  return get(ref.logicalName, ref.id) ?? null;
}
