// Bound and unbound actions: Merge (reference §13) and QualifyLead.
import type { SimTable } from '../dataverse.metadata.ts';
import type { DataverseStore } from '../dataverse.store.ts';
import { SimHttpError } from '../dataverse.types.ts';
import { GUID, requireJsonBody } from '../dataverse.wire.ts';
import type { ApiCall, ApiRoute } from './route.ts';

type EntityParameter = { table: SimTable; values: Record<string, unknown> };

/** A crmbaseentity parameter of the action; it must say its type (reference dataverse §13). */
function entityParameter(store: DataverseStore, body: Record<string, unknown>, name: string, required: boolean): EntityParameter | null {
  const value = body[name];
  if (value === undefined || value === null) {
    if (required) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: the parameter '${name}' is required.`);
    return null;
  }
  if (typeof value !== 'object' || Array.isArray(value)) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: '${name}' must be an entity.`);
  const typed = (value as Record<string, unknown>)['@odata.type'];
  const m = typeof typed === 'string' ? /^#?Microsoft\.Dynamics\.CRM\.([a-z_]+)$/.exec(typed) : null;
  const table = m?.[1] ? store.tables.get(m[1]) : undefined;
  if (!table) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: '${name}' needs an '@odata.type' naming its table.`);
  return { table, values: value as Record<string, unknown> };
}

function entityId(p: EntityParameter, name: string): string {
  const id = p.values[p.table.primaryKey];
  if (typeof id !== 'string' || !new RegExp(`^${GUID}$`).test(id)) throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: '${name}' needs its ${p.table.primaryKey}.`);
  return id.toLowerCase();
}

function merge({ store, req, res, ctx }: ApiCall): void {
  const body = requireJsonBody(req);
  const target = entityParameter(store, body, 'Target', true)!;
  const subordinate = entityParameter(store, body, 'Subordinate', true)!;
  const content = entityParameter(store, body, 'UpdateContent', false);
  if (typeof body.PerformParentingChecks !== 'boolean') {
    throw new SimHttpError(400, '0x80048d19', "Error identified in Payload provided by the user: the parameter 'PerformParentingChecks' is required.");
  }
  if (target.table !== subordinate.table || (content && content.table !== target.table)) {
    throw new SimHttpError(400, '0x80040203', 'The records to merge must be of the same entity type.');
  }
  const updateContent: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(content?.values ?? {})) if (!k.startsWith('@odata.') && k !== target.table.primaryKey) updateContent[k] = v;
  store.merge(target.table.logicalName, entityId(target, 'Target'), entityId(subordinate, 'Subordinate'), updateContent, body.PerformParentingChecks, ctx);
  res.status(204).end();
}

function qualifyLead({ store, req, res, ctx, match, base }: ApiCall): void {
  const body = requireJsonBody(req);
  if (body.CreateContact !== true) throw new SimHttpError(400, '0x80040203', 'The simulator qualifies leads into contacts only: send CreateContact: true.');
  const contact = store.qualifyLead(match[1]!, ctx);
  res.status(200).json({
    '@odata.context': `${base}$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)`,
    value: [{ '@odata.type': '#Microsoft.Dynamics.CRM.contact', contactid: contact.id }],
  });
}

export const actionRoutes: ApiRoute[] = [
  {
    pattern: /^Merge$/,
    endpoint: () => 'Merge',
    methods: { POST: merge },
    refuse: () => new SimHttpError(405, '0x80060888', 'Merge is an action: use POST.'),
  },
  {
    pattern: new RegExp(`^leads\\((${GUID})\\)/Microsoft\\.Dynamics\\.CRM\\.QualifyLead$`),
    endpoint: () => 'QualifyLead',
    methods: { POST: qualifyLead },
    refuse: () => new SimHttpError(405, '0x80060888', 'QualifyLead is an action: use POST.'),
  },
];
