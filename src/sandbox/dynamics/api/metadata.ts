// Table metadata: EntityDefinitions(LogicalName='...')/Attributes, optionally cast to one attribute
// type to read its option sets (reference §5).
import type { SimAttribute, SimTable } from '../dataverse.metadata.ts';
import type { DataverseStore } from '../dataverse.store.ts';
import { SimHttpError } from '../dataverse.types.ts';
import type { ApiCall, ApiRoute } from './route.ts';

const castTypes: Record<string, SimAttribute['type'][]> = {
  PicklistAttributeMetadata: ['Picklist'],
  StateAttributeMetadata: ['State'],
  StatusAttributeMetadata: ['Status'],
  BooleanAttributeMetadata: ['Boolean'],
};

const label = (text: string) => ({ UserLocalizedLabel: { Label: text, LanguageCode: 1033 }, LocalizedLabels: [{ Label: text, LanguageCode: 1033 }] });

function attributeMetadata(store: DataverseStore, t: SimTable, a: SimAttribute, cast: string | undefined): Record<string, unknown> {
  const row: Record<string, unknown> = {
    '@odata.type': `#Microsoft.Dynamics.CRM.${a.type === 'Uniqueidentifier' ? 'UniqueIdentifier' : a.type}AttributeMetadata`,
    LogicalName: a.logicalName,
    SchemaName: a.logicalName,
    MetadataId: a.metadataId,
    AttributeType: a.type,
    DisplayName: label(a.displayName),
    IsSecured: store.securedColumns.has(`${t.logicalName}.${a.logicalName}`),
    IsValidForRead: a.validForRead,
    IsValidForCreate: a.validForCreate,
    IsValidForUpdate: a.validForUpdate,
    RequiredLevel: { Value: a.requiredLevel, CanBeChanged: true },
    AttributeOf: null,
  };
  if (a.maxLength !== undefined) row.MaxLength = a.maxLength;
  if (cast !== undefined && a.options) {
    row.OptionSet =
      a.type === 'Boolean'
        ? { FalseOption: { Value: 0, Label: label(a.options[0]!.label) }, TrueOption: { Value: 1, Label: label(a.options[1]!.label) } }
        : { Options: a.options.map((o) => ({ Value: o.value, Label: label(o.label), ...(o.state === undefined ? {} : { State: o.state }) })) };
  }
  return row;
}

function attributes({ store, res, match, base }: ApiCall): void {
  const t = store.tables.get(match[1]!);
  if (!t) throw new SimHttpError(404, '0x80040217', `Could not find entity with name '${match[1]!}'.`);
  const cast = match[2];
  if (cast !== undefined && !castTypes[cast]) throw new SimHttpError(400, '0x80060888', `Unknown type cast 'Microsoft.Dynamics.CRM.${cast}'.`);
  const attrs = [...t.attributes.values()].filter((a) => cast === undefined || castTypes[cast]!.includes(a.type));
  res.status(200).json({
    '@odata.context': `${base}$metadata#EntityDefinitions('${t.logicalName}')/Attributes`,
    value: attrs.map((a) => attributeMetadata(store, t, a, cast)),
  });
}

export const metadataRoutes: ApiRoute[] = [
  {
    pattern: /^EntityDefinitions\(LogicalName='([a-z_]+)'\)\/Attributes(?:\/Microsoft\.Dynamics\.CRM\.(\w+))?$/,
    endpoint: ({ match }) => `EntityDefinitions/Attributes${match[2] ? `/${match[2]}` : ''}`,
    anyMethod: attributes,
  },
];
