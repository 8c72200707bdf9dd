import { randomUUID } from 'node:crypto';
import { isLookup, type SimAttribute, type SimTable } from './dataverse.metadata.ts';
import type { SimChange, SimLookup } from './dataverse.types.ts';

const CONTRACTS = 'http://schemas.microsoft.com/xrm/2011/Contracts';
const MAX_PAYLOAD_BYTES = 256 * 1024;

export type WebhookRegistration = {
  /** serviceendpoint / step id; appears as OwningExtension.Id */
  id: string;
  url: string;
  authType: 'WebhookKey' | 'HttpHeader' | 'HttpQueryString';
  /** WebhookKey: the key; HttpHeader/HttpQueryString: name -> value */
  authValue: string | Record<string, string>;
  entities: string[];
  messages: ('Create' | 'Update' | 'Delete' | 'Merge')[];
  /** register a PostImage with all columns (Create/Update only; there is no post-image of a delete) */
  postImage: boolean;
  /** Update steps fire only when one of these columns is in the Target; empty = all */
  filteringAttributes: string[];
};

export type WebhookDelivery = {
  registrationId: string;
  /** what was sent, so tests and the demo can replay a delivery exactly */
  url: string;
  headers: Record<string, string>;
  body: string;
  message: string;
  entity: string;
  id: string;
  attempts: number;
  status: number | null;
  error: string | null;
  at: string;
};

export type WebhookEmitterOptions = {
  organizationId: string;
  businessUnitId: string;
  organizationName: string;
  organizationHost: () => string;
  timeoutMs: number;
  retryDelayMs: number;
  fetch: typeof fetch;
  /** deliveries in flight at once (the async service's workers); default no limit */
  concurrency?: number;
};

function dateValue(ms: number): string {
  return `/Date(${ms})/`;
}

function entityReference(ref: SimLookup): Record<string, unknown> {
  return { __type: `EntityReference:${CONTRACTS}`, Id: ref.id, KeyAttributes: [], LogicalName: ref.logicalName, Name: null, RowVersion: null };
}

/** Internal value -> WCF DataContract JSON value (reference §6.5). */
export function wcfValue(attr: SimAttribute | undefined, value: unknown): unknown {
  if (value === null || value === undefined || !attr) return value ?? null;
  if (isLookup(attr)) return entityReference(value as SimLookup);
  switch (attr.type) {
    case 'Picklist':
    case 'State':
    case 'Status':
      return { __type: `OptionSetValue:${CONTRACTS}`, Value: value };
    case 'Money':
      return { __type: `Money:${CONTRACTS}`, Value: value };
    case 'DateTime':
      return dateValue(value as number);
    default:
      return value;
  }
}

function entity(table: SimTable, id: string, values: Record<string, unknown>, withType: boolean): Record<string, unknown> {
  const attributes = Object.entries(values).map(([key, value]) => ({ key, value: wcfValue(table.attributes.get(key), value) }));
  return {
    ...(withType ? { __type: `Entity:${CONTRACTS}` } : {}),
    Attributes: attributes,
    EntityState: null,
    FormattedValues: [],
    Id: id,
    KeyAttributes: [],
    LogicalName: table.logicalName,
    RelatedEntities: [],
    RowVersion: null,
  };
}

type Parameter = { key: string; value: unknown };

/** The message's Target and its other input and output parameters. */
function messageParameters(change: SimChange): { target: Record<string, unknown>; inputs: Parameter[]; outputs: Parameter[] } {
  const t = change.table;
  let target: Record<string, unknown>;
  const outputs: Parameter[] = [];
  const inputs: Parameter[] = [];
  if (change.message === 'Delete') {
    target = entityReference({ id: change.id, logicalName: t.logicalName });
  } else if (change.message === 'Merge') {
    // MergeRequest (reference §13): Target an EntityReference, SubordinateId a Guid
    target = entityReference({ id: change.id, logicalName: t.logicalName });
    inputs.push(
      { key: 'SubordinateId', value: change.merge?.subordinateId ?? null },
      { key: 'UpdateContent', value: entity(t, '00000000-0000-0000-0000-000000000000', change.merge?.updateContent ?? {}, true) },
      { key: 'PerformParentingChecks', value: change.merge?.performParentingChecks ?? false },
    );
  } else {
    const values: Record<string, unknown> = { ...change.changed, [t.primaryKey]: change.id };
    const rec = change.record!.values;
    values.modifiedon = rec.modifiedon;
    values.modifiedby = rec.modifiedby;
    values.modifiedonbehalfby = null;
    target = entity(t, change.id, values, true);
    if (change.message === 'Create') outputs.push({ key: 'id', value: change.id });
  }
  return { target, inputs, outputs };
}

/** The PostImage the step registered for: every non-null column of the row after the operation. */
function postImages(change: SimChange, registration: WebhookRegistration): Parameter[] {
  const t = change.table;
  const post: Parameter[] = [];
  if (registration.postImage && change.record) {
    const all: Record<string, unknown> = { [t.primaryKey]: change.id };
    for (const [k, v] of Object.entries(change.record.values)) if (v !== null && v !== undefined) all[k] = v;
    post.push({ key: 'PostImage', value: entity(t, change.id, all, false) });
  }
  return post;
}

export function buildRemoteExecutionContext(
  change: SimChange,
  registration: WebhookRegistration,
  org: { organizationId: string; businessUnitId: string; organizationName: string },
): Record<string, unknown> {
  const t = change.table;
  const { target, inputs, outputs } = messageParameters(change);
  const post = postImages(change, registration);
  const correlationId = randomUUID();
  const operationId = randomUUID();
  const common = {
    BusinessUnitId: org.businessUnitId,
    CorrelationId: correlationId,
    Depth: change.depth ?? 1,
    InitiatingUserId: change.userId,
    IsExecutingOffline: false,
    IsInTransaction: false,
    IsOfflinePlayback: false,
    IsolationMode: 1,
    MessageName: change.message,
    Mode: 1,
    OperationCreatedOn: dateValue(change.at),
    OperationId: operationId,
    OrganizationId: org.organizationId,
    OrganizationName: org.organizationName,
    OutputParameters: outputs,
    OwningExtension: { Id: registration.id, KeyAttributes: [], LogicalName: 'sdkmessageprocessingstep', Name: null, RowVersion: null },
  };
  const parent = {
    ...common,
    InputParameters: [{ key: 'Target', value: target }, ...inputs, ...(change.message === 'Merge' ? [] : [{ key: 'SuppressDuplicateDetection', value: false }])],
    ParentContext: null,
    PostEntityImages: [],
    PreEntityImages: [],
    PrimaryEntityId: change.id,
    PrimaryEntityName: t.logicalName,
    RequestId: null,
    SecondaryEntityName: 'none',
    SharedVariables: [
      {
        key: 'ChangedEntityTypes',
        value: [{ __type: 'KeyValuePairOfstringstring:#System.Collections.Generic', key: t.logicalName, value: change.message }],
      },
    ],
    Stage: 30,
    UserId: change.userId,
  };
  return {
    ...common,
    InputParameters: [{ key: 'Target', value: target }, ...inputs],
    ParentContext: parent,
    PostEntityImages: post,
    PreEntityImages: [],
    PrimaryEntityId: change.id,
    PrimaryEntityName: t.logicalName,
    RequestId: null,
    SecondaryEntityName: 'none',
    SharedVariables: [],
    Stage: 40,
    UserId: change.userId,
  };
}

export class WebhookEmitter {
  registrations: WebhookRegistration[] = [];
  readonly deliveries: WebhookDelivery[] = [];
  private readonly pending = new Set<Promise<void>>();
  private delivering = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly options: WebhookEmitterOptions) {}

  /** Runs a delivery once a worker is free: deliveries start in the order the changes happened. */
  private async whenFree<T>(run: () => Promise<T>): Promise<T> {
    const limit = this.options.concurrency ?? Infinity;
    if (this.delivering >= limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.delivering += 1;
    try {
      return await run();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.delivering -= 1;
    }
  }

  register(input: Partial<WebhookRegistration> & { url: string }): WebhookRegistration {
    const registration: WebhookRegistration = {
      id: input.id ?? randomUUID(),
      url: input.url,
      authType: input.authType ?? 'WebhookKey',
      authValue: input.authValue ?? '',
      entities: input.entities ?? ['lead', 'contact'],
      messages: input.messages ?? ['Create', 'Update', 'Delete'],
      postImage: input.postImage ?? false,
      filteringAttributes: input.filteringAttributes ?? [],
    };
    this.registrations.push(registration);
    return registration;
  }

  unregister(id: string): boolean {
    const before = this.registrations.length;
    this.registrations = this.registrations.filter((r) => r.id !== id);
    return this.registrations.length !== before;
  }

  /** Async steps run after commit: delivery never blocks or fails the write. */
  notify(change: SimChange): void {
    for (const registration of this.registrations) {
      if (!registration.entities.includes(change.table.logicalName)) continue;
      if (!registration.messages.includes(change.message)) continue;
      if (
        change.message === 'Update' &&
        registration.filteringAttributes.length > 0 &&
        !registration.filteringAttributes.some((a) => a in change.changed)
      ) {
        continue;
      }
      // the body is built when a worker takes the delivery (the platform builds it on its own
      // servers, not in the write); the row's values object is replaced, never changed, by a later
      // write, so a copy of the row keeps the image as of this change
      const snapshot: SimChange = { ...change, record: change.record && { ...change.record } };
      const job = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => this.whenFree(() => this.deliver(registration, snapshot, buildRemoteExecutionContext(snapshot, registration, this.options))))
        .finally(() => this.pending.delete(job));
      this.pending.add(job);
    }
  }

  /** Resolves once every delivery queued so far (and its retry) finished. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private async deliver(registration: WebhookRegistration, change: SimChange, body: Record<string, unknown>): Promise<void> {
    const url = new URL(registration.url);
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'x-ms-dynamics-organization': this.options.organizationHost(),
      'x-ms-dynamics-entity-name': change.table.logicalName,
      'x-ms-dynamics-request-name': change.message,
      'x-ms-correlation-request-id': body.CorrelationId as string,
      'x-request-id': randomUUID(),
    };
    if (registration.authType === 'WebhookKey' && typeof registration.authValue === 'string') {
      url.searchParams.set('code', registration.authValue);
    } else if (typeof registration.authValue === 'object') {
      for (const [k, v] of Object.entries(registration.authValue)) {
        if (registration.authType === 'HttpHeader') headers[k] = v;
        else url.searchParams.set(k, v);
      }
    }
    let json = JSON.stringify(body);
    if (Buffer.byteLength(json) > MAX_PAYLOAD_BYTES) {
      // the platform drops these and flags the request (reference §6.4)
      const trimmed = { ...body };
      for (const k of ['ParentContext', 'InputParameters', 'PreEntityImages', 'PostEntityImages']) delete trimmed[k];
      json = JSON.stringify(trimmed);
      headers['x-ms-dynamics-msg-size-exceeded'] = 'true';
    }
    const record: WebhookDelivery = {
      registrationId: registration.id,
      url: url.toString(),
      headers,
      body: json,
      message: change.message,
      entity: change.table.logicalName,
      id: change.id,
      attempts: 0,
      status: null,
      error: null,
      at: new Date().toISOString(),
    };
    // exactly one retry, and only for 502/503/504 (reference §6.3)
    for (let attempt = 1; attempt <= 2; attempt += 1) {
      record.attempts = attempt;
      try {
        const response = await this.options.fetch(url, {
          method: 'POST',
          headers,
          body: json,
          signal: AbortSignal.timeout(this.options.timeoutMs),
        });
        await response.arrayBuffer();
        record.status = response.status;
        record.error = null;
        if (attempt === 1 && [502, 503, 504].includes(response.status)) {
          await new Promise((resolve) => setTimeout(resolve, this.options.retryDelayMs));
          continue;
        }
      } catch (error) {
        record.error = error instanceof Error ? error.message : String(error);
      }
      break;
    }
    this.deliveries.push(record);
    if (this.deliveries.length > 1000) this.deliveries.shift();
  }
}
