// Who the caller is (WhoAmI) and which secured columns a user may touch
// (RetrievePrincipalAttributePrivileges).
import { SimHttpError, type ColumnGrant } from '../dataverse.types.ts';
import { GUID } from '../dataverse.wire.ts';
import type { ApiCall, ApiRoute } from './route.ts';

function whoAmI({ state, res, ctx, base }: ApiCall): void {
  res.status(200).json({
    '@odata.context': `${base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse`,
    BusinessUnitId: state.config.businessUnitId,
    UserId: ctx.userId,
    OrganizationId: state.config.organizationId,
  });
}

function attributePrivileges({ state, store, res, match, base }: ApiCall): void {
  const userId = match[1]!.toLowerCase();
  if (!store.get('systemuser', userId)) throw store.notFound('systemuser', userId);
  const list: Record<string, unknown>[] = [];
  for (const [key, grant] of store.securedColumns) {
    const [tableName, column] = key.split('.') as [string, string];
    const attr = store.tables.get(tableName)?.attributes.get(column);
    if (!attr) continue;
    // the app user holds only the configured grants; others (UI users here) are administrators
    const g: ColumnGrant = userId === state.config.syncUserId ? grant : { read: true, create: true, update: true };
    if (!g.read && !g.create && !g.update) continue;
    list.push({ AttributeId: attr.metadataId, CanCreate: g.create ? 4 : 0, CanRead: g.read ? 4 : 0, CanUpdate: g.update ? 4 : 0, CanReadUnMasked: 0 });
  }
  res.status(200).json({ '@odata.context': `${base}$metadata#Microsoft.Dynamics.CRM.RetrievePrincipalAttributePrivilegesResponse`, AttributePrivileges: list });
}

export const userRoutes: ApiRoute[] = [
  {
    pattern: /^WhoAmI(\(\))?$/,
    endpoint: () => 'WhoAmI',
    methods: { GET: whoAmI },
    refuse: () => new SimHttpError(405, '0x80060888', 'The HTTP verb is not supported for WhoAmI.'),
  },
  {
    pattern: new RegExp(`^systemusers\\((${GUID})\\)/Microsoft\\.Dynamics\\.CRM\\.RetrievePrincipalAttributePrivileges(\\(\\))?$`),
    endpoint: () => 'RetrievePrincipalAttributePrivileges',
    anyMethod: attributePrivileges,
  },
];
