// A Web API JSON body as the store's internal values: each refusal is the one the platform gives
// (unknown or read-only property, wrong literal type, too long, outside an option set, secured column).
import { isLookup, type SimAttribute, type SimTable } from './dataverse.metadata.ts';
import { SimHttpError, type ColumnGrant, type SimLookup, type SimRecord, type WriteContext } from './dataverse.types.ts';

/** What the conversion reads of the store: the schema, lookups' targets and field security. */
export type PayloadStore = {
  readonly tables: Map<string, SimTable>;
  readonly securedColumns: Map<string, ColumnGrant>;
  get(table: string, id: string): SimRecord | undefined;
  notFound(table: string, id: string): SimHttpError;
};

/** Converts a Web API JSON body into internal values, refusing what the real platform refuses. */
export function convertPayload(store: PayloadStore, t: SimTable, body: Record<string, unknown>, mode: 'create' | 'update', ctx: WriteContext): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const payloadError = (detail: string) =>
    new SimHttpError(
      400,
      '0x80048d19',
      `Error identified in Payload provided by the user for Entity :'${t.entitySet}', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : Microsoft.OData.ODataException: ${detail}`,
    );
  for (const [key, value] of Object.entries(body)) {
    if (key.startsWith('@odata.')) continue;
    if (key.endsWith('@odata.bind')) {
      const nav = key.slice(0, -'@odata.bind'.length);
      const attr = [...t.attributes.values()].find((a) => a.navigation && nav in a.navigation);
      if (!attr || !(mode === 'create' ? attr.validForCreate : attr.validForUpdate)) {
        throw payloadError(`An undeclared property '${nav}' which only has property annotations in the payload but no property value was found in the payload.`);
      }
      if (typeof value !== 'string') throw payloadError(`The value of an '@odata.bind' annotation for '${nav}' must be a string.`);
      const m = /(?:^|\/)([a-z_]+)\(([0-9a-fA-F-]{36})\)$/.exec(value);
      const target = attr.navigation![nav]!;
      const targetTable = store.tables.get(target)!;
      if (!m || m[1] !== targetTable.entitySet) {
        throw new SimHttpError(400, '0x80060888', `Invalid reference '${value}' for navigation property '${nav}': expected /${targetTable.entitySet}(<id>).`);
      }
      const refId = m[2]!.toLowerCase();
      if (!store.get(target, refId)) throw store.notFound(target, refId);
      out[attr.logicalName] = { id: refId, logicalName: target } satisfies SimLookup;
      continue;
    }
    if (key.includes('@')) continue;
    const attr = t.attributes.get(key);
    if (!attr || isLookup(attr)) {
      throw payloadError(`The property '${key}' does not exist on type 'Microsoft.Dynamics.CRM.${t.logicalName}'. Make sure to only use property names that are defined by the type or mark the type as open type.`);
    }
    if (key === t.primaryKey) {
      if (mode === 'update') continue;
      if (typeof value !== 'string' || !/^[0-9a-fA-F-]{36}$/.test(value)) throw payloadError(`Cannot convert the literal '${String(value)}' to the expected type 'Edm.Guid'.`);
      out[key] = value.toLowerCase();
      continue;
    }
    if (!(mode === 'create' ? attr.validForCreate : attr.validForUpdate)) {
      throw payloadError(`The property '${key}' cannot be written: it is not valid for ${mode}.`);
    }
    out[key] = convertValue(t, attr, value, payloadError);
  }
  // field-level security: a write to a secured column needs the matching grant
  if (!ctx.fullAccess) {
    for (const key of Object.keys(out)) {
      const grant = store.securedColumns.get(`${t.logicalName}.${key}`);
      if (grant && !(mode === 'create' ? grant.create : grant.update)) {
        const attr = t.attributes.get(key)!;
        throw new SimHttpError(
          403,
          '0x8004f507',
          `Caller user with Id ${ctx.userId} does not have ${mode} permissions to a ${attr.displayName} secured field on entity ${t.displayName}. The requested operation could not be completed.`,
        );
      }
    }
  }
  return out;
}

function convertValue(t: SimTable, attr: SimAttribute, value: unknown, payloadError: (d: string) => SimHttpError): unknown {
  const literal = JSON.stringify(value);
  if (value === null) {
    if (attr.requiredLevel === 'SystemRequired') {
      throw new SimHttpError(400, '0x80040203', `Attribute '${attr.logicalName}' cannot be set to NULL`);
    }
    return null;
  }
  switch (attr.type) {
    case 'String':
    case 'Memo': {
      if (typeof value !== 'string') throw payloadError(`Cannot convert the literal '${literal}' to the expected type 'Edm.String'.`);
      if (attr.maxLength !== undefined && value.length > attr.maxLength) {
        throw new SimHttpError(
          400,
          '0x80044331',
          `A validation error occurred.  The length of the '${attr.logicalName}' attribute of the '${t.logicalName}' entity exceeded the maximum allowed length of '${attr.maxLength}'.`,
        );
      }
      return value;
    }
    case 'Boolean':
      if (typeof value !== 'boolean') throw payloadError(`Cannot convert the literal '${literal}' to the expected type 'Edm.Boolean'.`);
      return value;
    case 'Integer':
    case 'BigInt':
    case 'Picklist':
    case 'State':
    case 'Status': {
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        throw payloadError(`Cannot convert the literal '${literal}' to the expected type 'Edm.Int32'.`);
      }
      if (attr.options && !attr.options.some((o) => o.value === value)) {
        throw new SimHttpError(
          400,
          '0x8004431a',
          `A validation error occurred. The value ${value} of '${attr.logicalName}' on record of type '${t.logicalName}' is outside the valid range. Accepted Values: ${attr.options.map((o) => o.value).join(',')}`,
        );
      }
      return value;
    }
    case 'Money':
      if (typeof value !== 'number') throw payloadError(`Cannot convert the literal '${literal}' to the expected type 'Edm.Decimal'.`);
      return value;
    case 'Uniqueidentifier':
      if (typeof value !== 'string' || !/^[0-9a-fA-F-]{36}$/.test(value)) throw payloadError(`Cannot convert the literal '${literal}' to the expected type 'Edm.Guid'.`);
      return value.toLowerCase();
    case 'DateTime': {
      const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
      if (Number.isNaN(ms)) throw payloadError(`Cannot convert the literal '${literal}' to the expected type 'Edm.DateTimeOffset'.`);
      return ms;
    }
    default:
      throw payloadError(`The property '${attr.logicalName}' cannot be written directly; use '@odata.bind'.`);
  }
}
