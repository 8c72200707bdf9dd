export type MarketoDataType =
  | 'string'
  | 'text'
  | 'email'
  | 'phone'
  | 'url'
  | 'integer'
  | 'float'
  | 'currency'
  | 'percent'
  | 'score'
  | 'boolean'
  | 'date'
  | 'datetime'
  | 'reference'
  | 'formula';

export type MarketoFieldDefinition = {
  id: number;
  /** REST API name, the key in every JSON payload */
  name: string;
  /** what the UI shows; lead tokens in webhook templates use it (`{{lead.Email Address}}`) */
  displayName: string;
  /** SOAP API name; webhook response mappings address fields by it */
  soapName: string;
  dataType: MarketoDataType;
  length?: number;
  /** true: the API cannot write it (Sync Leads skips the record) */
  readOnly: boolean;
  /** owned by the native CRM sync (describe2 `crmManaged`) */
  crmManaged?: boolean;
  /** usable as filterType / lookupField (describe2 `searchableFields`) */
  searchable?: boolean;
};

/**
 * The standard person fields the sync maps by default, plus custom fields the sync and the demo use.
 *
 * `microsoftIsDeleted` stands in for Marketo's native "Microsoft is Deleted" flag. The native field's
 * REST name is not documented and it is CRM-managed (read-only over the API), so the sync writes its
 * own writable custom boolean instead; admins can point the mapping at another field.
 * `dynamicsId` / `dynamicsEntity` are the custom fields a Sync-Person webhook's response mapping fills.
 */
export const defaultMarketoFields: readonly MarketoFieldDefinition[] = [
  { id: 1, name: 'id', displayName: 'Id', soapName: 'Id', dataType: 'integer', readOnly: true, searchable: true },
  { id: 2, name: 'company', displayName: 'Company Name', soapName: 'Company', dataType: 'string', length: 255, readOnly: false },
  { id: 3, name: 'email', displayName: 'Email Address', soapName: 'Email', dataType: 'email', length: 255, readOnly: false, searchable: true },
  { id: 4, name: 'firstName', displayName: 'First Name', soapName: 'FirstName', dataType: 'string', length: 255, readOnly: false },
  { id: 5, name: 'lastName', displayName: 'Last Name', soapName: 'LastName', dataType: 'string', length: 255, readOnly: false },
  { id: 6, name: 'title', displayName: 'Job Title', soapName: 'Title', dataType: 'string', length: 255, readOnly: false },
  { id: 7, name: 'phone', displayName: 'Phone Number', soapName: 'Phone', dataType: 'phone', length: 255, readOnly: false },
  { id: 8, name: 'mobilePhone', displayName: 'Mobile Phone Number', soapName: 'MobilePhone', dataType: 'phone', length: 255, readOnly: false },
  { id: 9, name: 'address', displayName: 'Address', soapName: 'Address', dataType: 'text', length: 65535, readOnly: false },
  { id: 10, name: 'city', displayName: 'City', soapName: 'City', dataType: 'string', length: 255, readOnly: false },
  { id: 11, name: 'state', displayName: 'State', soapName: 'State', dataType: 'string', length: 255, readOnly: false },
  { id: 12, name: 'postalCode', displayName: 'Postal Code', soapName: 'PostalCode', dataType: 'string', length: 255, readOnly: false },
  { id: 13, name: 'country', displayName: 'Country', soapName: 'Country', dataType: 'string', length: 255, readOnly: false },
  { id: 14, name: 'unsubscribed', displayName: 'Unsubscribed', soapName: 'Unsubscribed', dataType: 'boolean', readOnly: false },
  { id: 15, name: 'leadSource', displayName: 'Person Source', soapName: 'LeadSource', dataType: 'string', length: 255, readOnly: false },
  { id: 16, name: 'createdAt', displayName: 'Created At', soapName: 'CreatedAt', dataType: 'datetime', readOnly: true },
  { id: 17, name: 'updatedAt', displayName: 'Updated At', soapName: 'UpdatedAt', dataType: 'datetime', readOnly: true },
  { id: 18, name: 'leadPartitionId', displayName: 'Lead Partition Id', soapName: 'LeadPartitionId', dataType: 'integer', readOnly: true, searchable: true },
  // the person's company fields (standard fields; reference marketo §12): the sync copies the Dynamics account into them
  { id: 19, name: 'website', displayName: 'Website', soapName: 'Website', dataType: 'url', length: 255, readOnly: false },
  { id: 20, name: 'mainPhone', displayName: 'Main Phone', soapName: 'MainPhone', dataType: 'phone', length: 255, readOnly: false },
  { id: 21, name: 'industry', displayName: 'Industry', soapName: 'Industry', dataType: 'string', length: 255, readOnly: false },
  { id: 22, name: 'numberOfEmployees', displayName: 'Num Employees', soapName: 'NumberOfEmployees', dataType: 'integer', readOnly: false },
  { id: 23, name: 'annualRevenue', displayName: 'Annual Revenue', soapName: 'AnnualRevenue', dataType: 'currency', readOnly: false },
  { id: 24, name: 'sicCode', displayName: 'SIC Code', soapName: 'SICCode', dataType: 'string', length: 40, readOnly: false },
  { id: 25, name: 'billingStreet', displayName: 'Billing Address', soapName: 'BillingStreet', dataType: 'text', length: 65535, readOnly: false },
  { id: 26, name: 'billingCity', displayName: 'Billing City', soapName: 'BillingCity', dataType: 'string', length: 255, readOnly: false },
  { id: 27, name: 'billingState', displayName: 'Billing State', soapName: 'BillingState', dataType: 'string', length: 255, readOnly: false },
  { id: 28, name: 'billingPostalCode', displayName: 'Billing Postal Code', soapName: 'BillingPostalCode', dataType: 'string', length: 255, readOnly: false },
  { id: 29, name: 'billingCountry', displayName: 'Billing Country', soapName: 'BillingCountry', dataType: 'string', length: 255, readOnly: false },
  // Lead Owner fields come from a Sales Person link (reference marketo §13): read-only over the API
  { id: 157, name: 'leadOwnerEmailAddress', displayName: 'Lead Owner Email Address', soapName: 'LeadOwnerEmailAddress', dataType: 'email', length: 255, readOnly: true, crmManaged: true },
  { id: 158, name: 'leadOwnerFirstName', displayName: 'Lead Owner First Name', soapName: 'LeadOwnerFirstName', dataType: 'string', length: 255, readOnly: true, crmManaged: true },
  { id: 159, name: 'leadOwnerLastName', displayName: 'Lead Owner Last Name', soapName: 'LeadOwnerLastName', dataType: 'string', length: 255, readOnly: true, crmManaged: true },
  { id: 160, name: 'leadOwnerPhone', displayName: 'Lead Owner Phone Number', soapName: 'LeadOwnerPhone', dataType: 'phone', length: 255, readOnly: true, crmManaged: true },
  { id: 161, name: 'leadOwnerJobTitle', displayName: 'Lead Owner Job Title', soapName: 'LeadOwnerJobTitle', dataType: 'string', length: 255, readOnly: true, crmManaged: true },
  // ...so the sync writes the Dynamics owner into documented custom fields (docs/marketo-setup.md)
  { id: 103, name: 'dynamicsOwnerName', displayName: 'Dynamics Owner Name', soapName: 'DynamicsOwnerName', dataType: 'string', length: 255, readOnly: false },
  { id: 104, name: 'dynamicsOwnerEmail', displayName: 'Dynamics Owner Email', soapName: 'DynamicsOwnerEmail', dataType: 'email', length: 255, readOnly: false },
  { id: 105, name: 'dynamicsOwnerPhone', displayName: 'Dynamics Owner Phone', soapName: 'DynamicsOwnerPhone', dataType: 'phone', length: 255, readOnly: false },
  { id: 106, name: 'dynamicsOwnerTitle', displayName: 'Dynamics Owner Title', soapName: 'DynamicsOwnerTitle', dataType: 'string', length: 255, readOnly: false },
  { id: 100, name: 'microsoftIsDeleted', displayName: 'Microsoft is Deleted', soapName: 'MicrosoftIsDeleted', dataType: 'boolean', readOnly: false },
  { id: 101, name: 'dynamicsId', displayName: 'Dynamics Id', soapName: 'DynamicsId', dataType: 'string', length: 64, readOnly: false, searchable: true },
  { id: 102, name: 'dynamicsEntity', displayName: 'Dynamics Entity', soapName: 'DynamicsEntity', dataType: 'string', length: 16, readOnly: false },
];

/** Fields Get Lead(s) returns when the caller names none (reference §3.2). */
export const defaultLeadReadFields = ['id', 'email', 'updatedAt', 'createdAt', 'firstName', 'lastName'] as const;
