import { createHash } from 'node:crypto';

export type SimAttributeType =
  | 'Uniqueidentifier'
  | 'String'
  | 'Memo'
  | 'Boolean'
  | 'Integer'
  | 'BigInt'
  | 'Money'
  | 'Picklist'
  | 'State'
  | 'Status'
  | 'DateTime'
  | 'Lookup'
  | 'Customer'
  | 'Owner';

export type SimOption = { value: number; label: string; state?: number };

export type SimAttribute = {
  logicalName: string;
  displayName: string;
  type: SimAttributeType;
  metadataId: string;
  validForCreate: boolean;
  validForUpdate: boolean;
  validForRead: boolean;
  requiredLevel: 'None' | 'SystemRequired' | 'ApplicationRequired' | 'Recommended';
  maxLength?: number;
  options?: SimOption[];
  /** lookup targets: navigation property name -> target table */
  navigation?: Record<string, string>;
};

export type SimTable = {
  logicalName: string;
  entitySet: string;
  primaryKey: string;
  displayName: string;
  attributes: Map<string, SimAttribute>;
  /** API clients may write (systemuser is read-only here) */
  writable: boolean;
};

/** Deterministic MetadataId so RetrievePrincipalAttributePrivileges ids stay stable across restarts. */
function metadataId(table: string, column: string): string {
  const h = createHash('sha1').update(`${table}.${column}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

type Spec = Partial<Omit<SimAttribute, 'logicalName' | 'metadataId'>> & { type: SimAttributeType };

function table(logicalName: string, entitySet: string, displayName: string, specs: Record<string, Spec>, writable = true): SimTable {
  const attributes = new Map<string, SimAttribute>();
  for (const [name, spec] of Object.entries(specs)) {
    const readOnly = ['fullname', 'createdon', 'modifiedon', 'versionnumber', 'createdby', 'modifiedby'].includes(name);
    attributes.set(name, {
      logicalName: name,
      displayName: spec.displayName ?? name,
      type: spec.type,
      metadataId: metadataId(logicalName, name),
      validForCreate: spec.validForCreate ?? !readOnly,
      validForUpdate: spec.validForUpdate ?? !readOnly,
      validForRead: spec.validForRead ?? true,
      requiredLevel: spec.requiredLevel ?? 'None',
      ...(spec.maxLength === undefined ? {} : { maxLength: spec.maxLength }),
      ...(spec.options === undefined ? {} : { options: spec.options }),
      ...(spec.navigation === undefined ? {} : { navigation: spec.navigation }),
    });
  }
  return { logicalName, entitySet, primaryKey: `${logicalName}id`, displayName, attributes, writable };
}

const str = (displayName: string, maxLength: number): Spec => ({ type: 'String', displayName, maxLength });

const common: Record<string, Spec> = {
  firstname: str('First Name', 50),
  lastname: str('Last Name', 50),
  fullname: { type: 'String', displayName: 'Full Name', maxLength: 160 },
  emailaddress1: str('Email', 100),
  jobtitle: str('Job Title', 100),
  telephone1: str('Business Phone', 50),
  mobilephone: str('Mobile Phone', 50),
  address1_line1: str('Address 1: Street 1', 250),
  address1_city: str('Address 1: City', 80),
  address1_stateorprovince: str('Address 1: State/Province', 50),
  address1_postalcode: str('Address 1: ZIP/Postal Code', 20),
  address1_country: str('Address 1: Country/Region', 80),
  description: { type: 'Memo', displayName: 'Description', maxLength: 2000 },
  donotbulkemail: {
    type: 'Boolean',
    displayName: 'Do not allow Bulk Emails',
    options: [
      { value: 0, label: 'Allow' },
      { value: 1, label: 'Do Not Allow' },
    ],
  },
  new_synctomkto: {
    type: 'Boolean',
    displayName: 'Sync to Marketo',
    options: [
      { value: 0, label: 'No' },
      { value: 1, label: 'Yes' },
    ],
  },
  createdon: { type: 'DateTime', displayName: 'Created On' },
  modifiedon: { type: 'DateTime', displayName: 'Modified On' },
  versionnumber: { type: 'BigInt', displayName: 'Version Number' },
  createdby: { type: 'Lookup', displayName: 'Created By', navigation: { createdby: 'systemuser' } },
  modifiedby: { type: 'Lookup', displayName: 'Modified By', navigation: { modifiedby: 'systemuser' } },
  ownerid: { type: 'Owner', displayName: 'Owner', requiredLevel: 'SystemRequired', navigation: { ownerid: 'systemuser' } },
  // read-only: the owner when it is a user (reference dataverse §12), derived in odata-expand.ts
  owninguser: { type: 'Lookup', displayName: 'Owning User', validForCreate: false, validForUpdate: false, navigation: { owninguser: 'systemuser' } },
};

/** The default global option set of account.industrycode (reference dataverse §10). */
export const industryOptions: SimOption[] = [
  { value: 1, label: 'Accounting' },
  { value: 2, label: 'Agriculture and Non-petrol Natural Resource Extraction' },
  { value: 3, label: 'Broadcasting Printing and Publishing' },
  { value: 4, label: 'Brokers' },
  { value: 5, label: 'Building Supply Retail' },
  { value: 6, label: 'Business Services' },
  { value: 7, label: 'Consulting' },
  { value: 8, label: 'Consumer Services' },
  { value: 9, label: 'Design, Direction and Creative Management' },
  { value: 10, label: 'Distributors, Dispatchers and Processors' },
  { value: 11, label: "Doctor's Offices and Clinics" },
  { value: 12, label: 'Durable Manufacturing' },
  { value: 13, label: 'Eating and Drinking Places' },
  { value: 14, label: 'Entertainment Retail' },
  { value: 15, label: 'Equipment Rental and Leasing' },
  { value: 16, label: 'Financial' },
  { value: 17, label: 'Food and Tobacco Processing' },
  { value: 18, label: 'Inbound Capital Intensive Processing' },
  { value: 19, label: 'Inbound Repair and Services' },
  { value: 20, label: 'Insurance' },
  { value: 21, label: 'Legal Services' },
  { value: 22, label: 'Non-Durable Merchandise Retail' },
  { value: 23, label: 'Outbound Consumer Service' },
  { value: 24, label: 'Petrochemical Extraction and Distribution' },
  { value: 25, label: 'Service Retail' },
  { value: 26, label: 'SIG Affiliations' },
  { value: 27, label: 'Social Services' },
  { value: 28, label: 'Special Outbound Trade Contractors' },
  { value: 29, label: 'Specialty Realty' },
  { value: 30, label: 'Transportation' },
  { value: 31, label: 'Utility Creation and Distribution' },
  { value: 32, label: 'Vehicle Retail' },
  { value: 33, label: 'Wholesale' },
];

/** Set by Merge on the subordinate (reference dataverse §13): read-only. */
const mergeColumns = (table: string): Record<string, Spec> => ({
  masterid: { type: 'Lookup', displayName: 'Master ID', validForCreate: false, validForUpdate: false, navigation: { masterid: table } },
  merged: {
    type: 'Boolean',
    displayName: 'Merged',
    validForCreate: false,
    validForUpdate: false,
    options: [
      { value: 0, label: 'No' },
      { value: 1, label: 'Yes' },
    ],
  },
});

/** Status and Status Reason of a table whose rows are Active or Inactive (contact, account). */
const activeState: Spec = {
  type: 'State',
  displayName: 'Status',
  options: [
    { value: 0, label: 'Active' },
    { value: 1, label: 'Inactive' },
  ],
};

const activeStatus: Spec = {
  type: 'Status',
  displayName: 'Status Reason',
  options: [
    { value: 1, label: 'Active', state: 0 },
    { value: 2, label: 'Inactive', state: 1 },
  ],
};

const leadColumns: Record<string, Spec> = {
  leadid: { type: 'Uniqueidentifier', displayName: 'Lead', validForUpdate: false },
  ...common,
  lastname: { ...str('Last Name', 50), requiredLevel: 'ApplicationRequired' },
  companyname: str('Company Name', 100),
  subject: str('Topic', 300),
  leadsourcecode: {
    type: 'Picklist',
    displayName: 'Lead Source',
    options: [
      { value: 1, label: 'Advertisement' },
      { value: 2, label: 'Employee Referral' },
      { value: 3, label: 'External Referral' },
      { value: 4, label: 'Partner' },
      { value: 5, label: 'Public Relations' },
      { value: 6, label: 'Seminar' },
      { value: 7, label: 'Trade Show' },
      { value: 8, label: 'Web' },
      { value: 9, label: 'Word of Mouth' },
      { value: 10, label: 'Other' },
    ],
  },
  statecode: {
    type: 'State',
    displayName: 'Status',
    requiredLevel: 'SystemRequired',
    options: [
      { value: 0, label: 'Open' },
      { value: 1, label: 'Qualified' },
      { value: 2, label: 'Disqualified' },
    ],
  },
  statuscode: {
    type: 'Status',
    displayName: 'Status Reason',
    options: [
      { value: 1, label: 'New', state: 0 },
      { value: 2, label: 'Contacted', state: 0 },
      { value: 3, label: 'Qualified', state: 1 },
      { value: 4, label: 'Lost', state: 2 },
      { value: 5, label: 'Cannot Contact', state: 2 },
      { value: 6, label: 'No Longer Interested', state: 2 },
      { value: 7, label: 'Canceled', state: 2 },
    ],
  },
  parentcontactid: { type: 'Lookup', displayName: 'Parent Contact for lead', navigation: { parentcontactid: 'contact' } },
  ...mergeColumns('lead'),
};

const contactColumns: Record<string, Spec> = {
  contactid: { type: 'Uniqueidentifier', displayName: 'Contact', validForUpdate: false },
  ...common,
  lastname: { ...str('Last Name', 50), requiredLevel: 'ApplicationRequired' },
  parentcustomerid: {
    type: 'Customer',
    displayName: 'Company Name',
    navigation: { parentcustomerid_account: 'account', parentcustomerid_contact: 'contact' },
  },
  originatingleadid: { type: 'Lookup', displayName: 'Originating Lead', navigation: { originatingleadid: 'lead' } },
  ...mergeColumns('contact'),
  preferredcontactmethodcode: {
    type: 'Picklist',
    displayName: 'Preferred Method of Contact',
    options: [
      { value: 1, label: 'Any' },
      { value: 2, label: 'Email' },
      { value: 3, label: 'Phone' },
      { value: 4, label: 'Fax' },
      { value: 5, label: 'Mail' },
    ],
  },
  statecode: { ...activeState, requiredLevel: 'SystemRequired' },
  statuscode: activeStatus,
};

const accountColumns: Record<string, Spec> = {
  accountid: { type: 'Uniqueidentifier', displayName: 'Account', validForUpdate: false },
  name: { ...str('Account Name', 160), requiredLevel: 'ApplicationRequired' },
  websiteurl: str('Website', 200),
  telephone1: str('Main Phone', 50),
  emailaddress1: str('Email', 100),
  industrycode: { type: 'Picklist', displayName: 'Industry', options: industryOptions },
  numberofemployees: { type: 'Integer', displayName: 'Number of Employees' },
  revenue: { type: 'Money', displayName: 'Annual Revenue' },
  sic: str('SIC Code', 20),
  address1_line1: str('Address 1: Street 1', 250),
  address1_line2: str('Address 1: Street 2', 250),
  address1_city: str('Address 1: City', 80),
  address1_stateorprovince: str('Address 1: State/Province', 50),
  address1_postalcode: str('Address 1: ZIP/Postal Code', 20),
  address1_country: str('Address 1: Country/Region', 80),
  parentaccountid: { type: 'Lookup', displayName: 'Parent Account', navigation: { parentaccountid: 'account' } },
  ...mergeColumns('account'),
  createdon: common.createdon!,
  modifiedon: common.modifiedon!,
  versionnumber: common.versionnumber!,
  createdby: common.createdby!,
  modifiedby: common.modifiedby!,
  ownerid: common.ownerid!,
  statecode: activeState,
  statuscode: activeStatus,
};

const systemUserColumns: Record<string, Spec> = {
  systemuserid: { type: 'Uniqueidentifier', displayName: 'User', validForUpdate: false },
  domainname: str('User Name', 1024),
  fullname: { type: 'String', displayName: 'Full Name', maxLength: 200 },
  firstname: str('First Name', 64),
  lastname: str('Last Name', 64),
  internalemailaddress: str('Primary Email', 100),
  title: str('Title', 128),
  jobtitle: str('Job Title', 100),
  address1_telephone1: str('Main Phone', 50),
  mobilephone: str('Mobile Phone', 64),
  applicationid: { type: 'Uniqueidentifier', displayName: 'Application ID' },
  azureactivedirectoryobjectid: { type: 'Uniqueidentifier', displayName: 'Azure AD Object ID' },
  isdisabled: { type: 'Boolean', displayName: 'Status', options: [{ value: 0, label: 'Enabled' }, { value: 1, label: 'Disabled' }] },
  createdon: common.createdon!,
  modifiedon: common.modifiedon!,
  versionnumber: common.versionnumber!,
  createdby: common.createdby!,
  modifiedby: common.modifiedby!,
};

/** The tables the simulator serves, columns in the order the Web API returns them; systemuser is read-only. */
export function createSchema(): Map<string, SimTable> {
  const tables = [
    table('lead', 'leads', 'Lead', leadColumns),
    table('contact', 'contacts', 'Contact', contactColumns),
    table('account', 'accounts', 'Account', accountColumns),
    table('systemuser', 'systemusers', 'User', systemUserColumns, false),
  ];
  return new Map(tables.map((t) => [t.logicalName, t]));
}

/** Default status reason for a state (first option of that state). */
export function defaultStatusFor(t: SimTable, state: number): number | undefined {
  return t.attributes.get('statuscode')?.options?.find((o) => o.state === state)?.value;
}

export function isLookup(a: SimAttribute): boolean {
  return a.type === 'Lookup' || a.type === 'Customer' || a.type === 'Owner';
}
