import { STATUS_CODES } from 'node:http';
import { ActivityType, coerceFieldValue, isoSeconds, type MarketoStore, type StoredLead } from './marketo.store.ts';

/** A webhook as defined in Admin > Webhooks (reference §6). */
export type MarketoWebhookDefinition = {
  name: string;
  /** tokens allowed; characters are sent exactly as typed, token values inserted raw */
  url: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** payload; ignored for GET */
  template?: string;
  /** JSON escapes values and wraps string tokens in quotes itself; default none */
  tokenEncoding?: 'none' | 'json' | 'form';
  /** "Set Custom Header"; values may hold tokens */
  headers?: Record<string, string>;
  /** only JSON responses can be mapped; XML is not simulated */
  responseType?: 'json' | 'none';
  /** response attribute path (`a.b[0].c`) -> Marketo field by SOAP API name */
  responseMappings?: { attribute: string; field: string }[];
};

export type MarketoWebhookCallResult = {
  leadId: number;
  /** the remote HTTP status, null on timeout or connection failure */
  status: number | null;
  /** the Call Webhook activity's Error Type; null on success */
  errorType: string | null;
  responseBody: string | null;
  /** fields written from the response mappings (REST names) */
  mappedFields: Record<string, unknown>;
  /** mappings that could not be applied and why */
  skippedMappings: { attribute: string; field: string; reason: string }[];
  request: { url: string; method: string; headers: Record<string, string>; body: string | null };
};

/** Extra tokens in scope for one call, e.g. `{ 'my.SyncSecret': 's3cret', 'campaign.name': 'Sync' }`. */
export type MarketoWebhookTokens = Record<string, string | number | boolean | null>;

const tokenPattern = /\{\{\s*([A-Za-z]+)\.([^}:]+?)\s*(?::default=([^}]*))?\}\}/g;

function leadTokenValue(store: MarketoStore, lead: StoredLead, name: string): unknown {
  const field = store.fieldByDisplayName(name);
  if (!field) return undefined;
  if (field.name === 'id') return lead.id;
  if (field.name === 'createdAt') return isoSeconds(lead.createdAt);
  if (field.name === 'updatedAt') return isoSeconds(lead.updatedAt);
  return lead.values[field.name];
}

function encodeToken(value: unknown, encoding: 'none' | 'json' | 'form'): string {
  if (value === undefined || value === null || value === '') return encoding === 'json' ? 'null' : '';
  if (encoding === 'json') return JSON.stringify(value);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return encoding === 'form' ? encodeURIComponent(text) : text;
}

export function renderWebhookTemplate(
  store: MarketoStore,
  text: string,
  lead: StoredLead,
  tokens: MarketoWebhookTokens,
  encoding: 'none' | 'json' | 'form',
): string {
  return text.replace(tokenPattern, (_match, scope: string, rawName: string, fallback: string | undefined) => {
    const name = rawName.trim();
    let value: unknown = scope.toLowerCase() === 'lead' ? leadTokenValue(store, lead, name) : tokens[`${scope}.${name}`];
    if ((value === undefined || value === null || value === '') && fallback !== undefined) value = fallback;
    return encodeToken(value, encoding);
  });
}

function readPath(body: unknown, path: string): unknown {
  let current: unknown = body;
  for (const part of path.split('.')) {
    const match = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part.trim());
    if (!match) return undefined;
    const key = match[1] ?? '';
    if (typeof current !== 'object' || current === null || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[key];
    for (const index of (match[2] ?? '').matchAll(/\[(\d+)\]/g)) {
      if (!Array.isArray(current)) return undefined;
      current = current[Number(index[1])];
    }
  }
  return current;
}

/** Marketo lets at most 20 webhook calls be outstanding per instance; the rest wait (community). */
export function createWebhookCaller(options: { store: MarketoStore; fetch: typeof fetch; timeoutMs: number; maxOutstanding?: number }) {
  const { store } = options;
  const maxOutstanding = options.maxOutstanding ?? 20;
  let outstanding = 0;
  const waiting: (() => void)[] = [];

  async function acquire(): Promise<void> {
    if (outstanding < maxOutstanding) {
      outstanding++;
      return;
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  }

  function release(): void {
    const next = waiting.shift();
    if (next) next();
    else outstanding--;
  }

  function applyMappings(
    definition: MarketoWebhookDefinition,
    lead: StoredLead,
    body: unknown,
    result: MarketoWebhookCallResult,
  ): void {
    const updates: Record<string, unknown> = {};
    for (const mapping of definition.responseMappings ?? []) {
      const field = store.fieldBySoapName(mapping.field);
      if (!field) {
        result.skippedMappings.push({ ...mapping, reason: 'unknown field' });
        continue;
      }
      if (field.readOnly) {
        result.skippedMappings.push({ ...mapping, reason: 'read-only field' });
        continue;
      }
      let raw = readPath(body, mapping.attribute);
      if (raw === undefined) {
        result.skippedMappings.push({ ...mapping, reason: 'attribute not in response' });
        continue;
      }
      const textual = ['string', 'text', 'email', 'phone', 'url'].includes(field.dataType);
      if (textual && (typeof raw === 'number' || typeof raw === 'boolean')) raw = String(raw);
      const coerced = coerceFieldValue(field, raw);
      if ('reason' in coerced) {
        result.skippedMappings.push({ ...mapping, reason: coerced.reason.message });
        continue;
      }
      updates[field.name] = coerced.value;
    }
    if (Object.keys(updates).length === 0) return;
    store.update(lead.id, updates, { kind: 'webhook', webhookName: definition.name });
    Object.assign(result.mappedFields, updates);
  }

  /** One request for one person, no retries, mappings only on 2xx; logs a Call Webhook activity. */
  async function call(definition: MarketoWebhookDefinition, leadId: number, tokens: MarketoWebhookTokens = {}): Promise<MarketoWebhookCallResult> {
    const lead = store.get(leadId);
    if (!lead) throw new Error(`lead ${leadId} not found`);
    const encoding = definition.tokenEncoding ?? 'none';
    const url = renderWebhookTemplate(store, definition.url, lead, tokens, 'none');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(definition.headers ?? {})) {
      headers[name] = renderWebhookTemplate(store, value, lead, tokens, 'none');
    }
    const body =
      definition.method !== 'GET' && definition.template !== undefined
        ? renderWebhookTemplate(store, definition.template, lead, tokens, encoding)
        : null;
    const result: MarketoWebhookCallResult = {
      leadId,
      status: null,
      errorType: null,
      responseBody: null,
      mappedFields: {},
      skippedMappings: [],
      request: { url, method: definition.method, headers, body },
    };

    await acquire();
    try {
      const response = await options.fetch(url, {
        method: definition.method,
        headers,
        ...(body === null ? {} : { body }),
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      result.status = response.status;
      result.responseBody = await response.text();
      if (response.status < 200 || response.status > 299) {
        result.errorType = STATUS_CODES[response.status] ?? `HTTP ${response.status}`;
      } else if (definition.responseType === 'json' || (definition.responseMappings?.length ?? 0) > 0) {
        if (result.responseBody.trim() === '') result.errorType = '1001';
        else {
          let parsed: unknown;
          try {
            parsed = JSON.parse(result.responseBody);
          } catch {
            result.errorType = 'Invalid JSON response';
          }
          if (result.errorType === null) applyMappings(definition, lead, parsed, result);
        }
      }
    } catch (error) {
      const name = error instanceof Error ? error.name : '';
      result.errorType = name === 'TimeoutError' || name === 'AbortError' ? 'Timeout' : 'Connection error';
    } finally {
      release();
    }

    store.appendActivity({
      leadId,
      typeId: ActivityType.callWebhook,
      origin: { kind: 'webhook', webhookName: definition.name },
      primaryAttributeValue: definition.name,
      ...(result.errorType === null ? {} : { extraAttributes: [{ name: 'Error Type', value: result.errorType }] }),
    });
    return result;
  }

  return { call };
}
