import { DataverseNotFoundError } from './dataverse.errors.ts';
import { quote } from './dataverse.rows.ts';
import {
  attributeMetadataSchema,
  attributePrivilegesSchema,
  collectionSchema,
  optionSetAttributeSchema,
  systemUserRowSchema,
  whoAmIResponseSchema,
  type DataverseIdentity,
} from './dataverse.schemas.ts';
import { parse, type DataverseCall, type RawResponse } from './dataverse.transport.ts';
import type { DataverseOwner } from './dataverse.writes.ts';
import type { DataverseEntity } from './dataverse.rows.ts';

// Who the sync is in Dataverse, who an owner is, and what the sync user may do with each column:
// the metadata the engine consults before it reads or writes values.

export type DataverseAttribute = {
  logicalName: string;
  metadataId: string;
  attributeType: string;
  isSecured: boolean;
  isValidForRead: boolean;
  isValidForCreate: boolean;
  isValidForUpdate: boolean;
  requiredLevel: string | null;
  maxLength: number | null;
  /** choice columns (Picklist/State/Status) and two-options (Boolean: 0 = false, 1 = true) */
  options: { value: number; label: string }[] | null;
};

export type DataverseColumnAccess = DataverseAttribute & {
  /** the sync user can see values (not secured, or secured with a read grant) */
  canRead: boolean;
  canCreate: boolean;
  canUpdate: boolean;
};

const OPTION_SET_CASTS = ['PicklistAttributeMetadata', 'StateAttributeMetadata', 'StatusAttributeMetadata', 'BooleanAttributeMetadata'];

/** The labels of every choice and two-options column, by logical name. */
function optionsByColumn(optionSets: RawResponse[], endpoint: string): Map<string, { value: number; label: string }[]> {
  const options = new Map<string, { value: number; label: string }[]>();
  for (const raw of optionSets) {
    for (const row of parse(collectionSchema, raw, endpoint).value) {
      const attr = optionSetAttributeSchema.parse(row);
      const set = attr.OptionSet;
      if (!set) continue;
      const list = set.Options ?? [set.FalseOption, set.TrueOption].filter((o) => o != null);
      options.set(
        attr.LogicalName,
        list.map((o) => ({ value: o.Value, label: o.Label?.UserLocalizedLabel?.Label ?? String(o.Value) })),
      );
    }
  }
  return options;
}

export function createDataverseMetadata(call: DataverseCall) {
  let identity: Promise<DataverseIdentity> | undefined;

  /** the sync user's identity; fetched once and cached (echo suppression compares against userId) */
  function whoAmI(): Promise<DataverseIdentity> {
    identity ??= call({ method: 'GET', url: 'WhoAmI', endpoint: 'GET WhoAmI' })
      .then((raw) => {
        const who = parse(whoAmIResponseSchema, raw, 'GET WhoAmI');
        return { userId: who.UserId, businessUnitId: who.BusinessUnitId, organizationId: who.OrganizationId };
      })
      .catch((error: unknown) => {
        identity = undefined;
        throw error;
      });
    return identity;
  }

  async function resolveSystemUserId(owner: DataverseOwner): Promise<string> {
    if ('systemUserId' in owner) return owner.systemUserId;
    const filter = `domainname eq ${quote(owner.domainName)}`;
    const raw = await call({ method: 'GET', url: `systemusers?$select=systemuserid&$filter=${encodeURIComponent(filter)}`, endpoint: 'GET systemusers' });
    const first = parse(collectionSchema, raw, 'GET systemusers').value[0];
    if (first === undefined) throw new DataverseNotFoundError(`No Dynamics user with domain name ${owner.domainName}`, { endpoint: 'GET systemusers' });
    return systemUserRowSchema.parse(first).systemuserid;
  }

  async function getAttributes(entity: DataverseEntity): Promise<DataverseAttribute[]> {
    const base = `EntityDefinitions(LogicalName='${entity}')/Attributes`;
    const endpoint = 'GET EntityDefinitions/Attributes';
    const select = 'LogicalName,MetadataId,AttributeType,IsSecured,IsValidForRead,IsValidForCreate,IsValidForUpdate,AttributeOf,RequiredLevel';
    const [all, ...optionSets] = await Promise.all([
      call({ method: 'GET', url: `${base}?$select=${select}`, endpoint }),
      ...OPTION_SET_CASTS.map((cast) => call({ method: 'GET', url: `${base}/Microsoft.Dynamics.CRM.${cast}?$select=LogicalName&$expand=OptionSet`, endpoint })),
    ]);
    const options = optionsByColumn(optionSets, endpoint);
    return parse(collectionSchema, all, endpoint).value.map((row) => {
      const a = attributeMetadataSchema.parse(row);
      return {
        logicalName: a.LogicalName,
        metadataId: a.MetadataId,
        attributeType: a.AttributeType,
        isSecured: a.IsSecured ?? false,
        isValidForRead: a.IsValidForRead ?? false,
        isValidForCreate: a.IsValidForCreate ?? false,
        isValidForUpdate: a.IsValidForUpdate ?? false,
        requiredLevel: a.RequiredLevel?.Value ?? null,
        maxLength: a.MaxLength ?? null,
        options: options.get(a.LogicalName) ?? null,
      };
    });
  }

  async function getColumnAccess(entity: DataverseEntity): Promise<DataverseColumnAccess[]> {
    const [attributes, who] = await Promise.all([getAttributes(entity), whoAmI()]);
    const endpoint = 'GET RetrievePrincipalAttributePrivileges';
    const raw = await call({ method: 'GET', url: `systemusers(${who.userId})/Microsoft.Dynamics.CRM.RetrievePrincipalAttributePrivileges()`, endpoint });
    const privileges = new Map(parse(attributePrivilegesSchema, raw, endpoint).AttributePrivileges.map((p) => [p.AttributeId.toLowerCase(), p]));
    return attributes.map((a) => {
      const grant = privileges.get(a.metadataId.toLowerCase());
      // field permission values: 0 Not Allowed, 4 Allowed; a secured column without a grant is closed
      const allowed = (v: number | undefined) => !a.isSecured || v === 4;
      return {
        ...a,
        canRead: a.isValidForRead && allowed(grant?.CanRead),
        canCreate: a.isValidForCreate && allowed(grant?.CanCreate),
        canUpdate: a.isValidForUpdate && allowed(grant?.CanUpdate),
      };
    });
  }

  return { whoAmI, resolveSystemUserId, getAttributes, getColumnAccess };
}
