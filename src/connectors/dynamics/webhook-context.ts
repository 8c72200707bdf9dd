import { z } from 'zod';

// WCF DataContract JSON of a RemoteExecutionContext (reference §6.5). Only what the sync reads is
// required; everything else passes through so newer payload fields never break intake.

const dateRegex = /^\/Date\((-?\d+)([+-]\d{4})?\)\/$/;

/** "/Date(1506409448000-0700)/" -> ISO instant. The offset is display-only: ms are already UTC. */
export function parseWcfDate(value: string): string | null {
  const match = dateRegex.exec(value);
  if (!match?.[1]) return null;
  return new Date(Number(match[1])).toISOString();
}

const wcfDateSchema = z.string().transform((value, ctx) => {
  const iso = parseWcfDate(value);
  if (iso === null) {
    ctx.addIssue({ code: 'custom', message: `expected a /Date(ms)/ value, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return iso;
});

const guid = z.guid();

const keyValueSchema = z.object({ key: z.string(), value: z.unknown() });

const entityReferenceShape = z.looseObject({
  Id: guid,
  LogicalName: z.string(),
  Name: z.string().nullable().optional(),
});

const entitySchema = z.looseObject({
  Attributes: z.array(keyValueSchema),
  Id: guid,
  LogicalName: z.string(),
});

export type DataverseEntityReference = { id: string; logicalName: string; name: string | null };
export type DataverseWebhookValue =
  | string
  | number
  | boolean
  | null
  | DataverseEntityReference
  | DataverseWebhookValue[]
  | { [key: string]: DataverseWebhookValue };

/** Dataverse values nest a few levels at most (a collection of references); deeper is not Dataverse's, and dropped */
const MAX_VALUE_DEPTH = 16;

/** Turns a DataContract value into a plain one: OptionSetValue/Money -> number, dates -> ISO, references -> {id, logicalName, name}. */
export function plainWebhookValue(value: unknown, depth = 0): DataverseWebhookValue {
  if (value === null || value === undefined || depth > MAX_VALUE_DEPTH) return null;
  const inner = (v: unknown) => plainWebhookValue(v, depth + 1);
  if (typeof value === 'string') return parseWcfDate(value) ?? value;
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (Array.isArray(value)) return value.map(inner);
  if (typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const type = typeof record.__type === 'string' ? record.__type : '';
    if (type.startsWith('EntityReference:') || (type === '' && 'Id' in record && 'LogicalName' in record)) {
      const ref = entityReferenceShape.safeParse(record);
      if (ref.success) return { id: ref.data.Id, logicalName: ref.data.LogicalName, name: ref.data.Name ?? null };
    }
    if ((type.startsWith('OptionSetValue:') || type.startsWith('Money:')) && typeof record.Value === 'number') {
      return record.Value;
    }
    if (type.startsWith('OptionSetValueCollection:') && Array.isArray(record.Value)) {
      return record.Value.map(inner);
    }
    const out: Record<string, DataverseWebhookValue> = {};
    for (const [k, v] of Object.entries(record)) if (k !== '__type') out[k] = inner(v);
    return out;
  }
  return null;
}

function attributesToPlain(attributes: { key: string; value: unknown }[]): Record<string, DataverseWebhookValue> {
  const out: Record<string, DataverseWebhookValue> = {};
  for (const { key, value } of attributes) out[key] = plainWebhookValue(value, 0);
  return out;
}

export const remoteExecutionContextSchema = z.looseObject({
  MessageName: z.enum(['Create', 'Update', 'Delete', 'Merge']),
  PrimaryEntityName: z.string().min(1),
  PrimaryEntityId: guid,
  InitiatingUserId: guid,
  UserId: guid,
  CorrelationId: guid,
  OperationId: guid,
  RequestId: guid.nullable().optional(),
  Depth: z.number().int().nonnegative(),
  OperationCreatedOn: wcfDateSchema,
  OrganizationId: guid,
  // absent when the payload exceeded 256 KB (x-ms-dynamics-msg-size-exceeded)
  InputParameters: z.array(keyValueSchema).optional(),
  PostEntityImages: z.array(z.object({ key: z.string(), value: entitySchema })).optional(),
});
export type RemoteExecutionContext = z.infer<typeof remoteExecutionContextSchema>;

export type DataverseWebhookNotice = {
  messageName: 'Create' | 'Update' | 'Delete' | 'Merge';
  /** logical name, e.g. "contact" */
  entity: string;
  id: string;
  /** columns in the Target (for Update only the changed ones, plus modifiedon/modifiedby...) */
  changedAttributes: Record<string, DataverseWebhookValue>;
  /** full values when the step registers a post-image */
  postImage?: Record<string, DataverseWebhookValue>;
  initiatingUserId: string;
  userId: string;
  correlationId: string;
  operationId: string;
  requestId: string | null;
  depth: number;
  /** ISO instant */
  operationCreatedOn: string;
  organizationId: string;
  /** InputParameters/images were dropped (payload > 256 KB): read the row via the Web API */
  trimmed: boolean;
  /** Merge: the subordinate (SubordinateId), deactivated; `id` is the Target, the master that survives */
  subordinateId?: string;
};

export type ParseDataverseWebhookResult =
  | { ok: true; notice: DataverseWebhookNotice }
  | { ok: false; path: string; message: string };

function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
}

export function parseDataverseWebhook(body: unknown): ParseDataverseWebhookResult {
  const parsed = remoteExecutionContextSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = formatPath(issue?.path ?? []);
    return { ok: false, path, message: `Not a Dataverse RemoteExecutionContext: ${path}: ${issue?.message ?? 'invalid'}` };
  }
  const ctx = parsed.data;
  const inputIndex = ctx.InputParameters?.findIndex((p) => p.key === 'Target') ?? -1;
  const target = inputIndex >= 0 ? ctx.InputParameters?.[inputIndex]?.value : undefined;
  let changedAttributes: Record<string, DataverseWebhookValue> = {};
  let subordinateId: string | undefined;
  if (ctx.MessageName === 'Merge') {
    // MergeRequest (reference §13): Target is an EntityReference (the master), SubordinateId a Guid
    const index = ctx.InputParameters?.findIndex((p) => p.key === 'SubordinateId') ?? -1;
    const subordinate = guid.safeParse(index >= 0 ? ctx.InputParameters?.[index]?.value : undefined);
    if (!subordinate.success) {
      const path = index >= 0 ? `InputParameters[${index}].value` : 'InputParameters';
      return { ok: false, path, message: `${path}: a Merge without a SubordinateId Guid` };
    }
    subordinateId = subordinate.data.toLowerCase();
  } else if (target !== undefined && ctx.MessageName !== 'Delete') {
    const entity = entitySchema.safeParse(target);
    if (!entity.success) {
      const issue = entity.error.issues[0];
      const path = formatPath(['InputParameters', inputIndex, 'value', ...(issue?.path ?? [])]);
      return { ok: false, path, message: `Target is not an Entity: ${path}: ${issue?.message ?? 'invalid'}` };
    }
    if (entity.data.Id.toLowerCase() !== ctx.PrimaryEntityId.toLowerCase()) {
      const path = `InputParameters[${inputIndex}].value.Id`;
      return { ok: false, path, message: `${path}: Target id differs from PrimaryEntityId` };
    }
    changedAttributes = attributesToPlain(entity.data.Attributes);
  }
  const image = ctx.PostEntityImages?.[0]?.value;
  const notice: DataverseWebhookNotice = {
    messageName: ctx.MessageName,
    entity: ctx.PrimaryEntityName,
    id: ctx.PrimaryEntityId.toLowerCase(),
    changedAttributes,
    initiatingUserId: ctx.InitiatingUserId.toLowerCase(),
    userId: ctx.UserId.toLowerCase(),
    correlationId: ctx.CorrelationId,
    operationId: ctx.OperationId,
    requestId: ctx.RequestId ?? null,
    depth: ctx.Depth,
    operationCreatedOn: ctx.OperationCreatedOn,
    organizationId: ctx.OrganizationId,
    trimmed: ctx.InputParameters === undefined,
  };
  if (image) notice.postImage = attributesToPlain(image.Attributes);
  if (subordinateId) notice.subordinateId = subordinateId;
  return { ok: true, notice };
}
