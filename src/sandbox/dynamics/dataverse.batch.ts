import { randomUUID } from 'node:crypto';
import { SimHttpError } from './dataverse.types.ts';

// The multipart/mixed wire format of OData `$batch` as Dataverse speaks it (reference §2.7): parts
// are either one request (`application/http`) or a change set (a nested multipart/mixed of
// requests that commit together). Parsing and serialising only; executing is the simulator's.

export const MAX_BATCH_OPERATIONS = 1000;

export type BatchRequest = {
  method: string;
  /** as written in the part: relative (/api/data/v9.2/...) or absolute */
  url: string;
  headers: Map<string, string>;
  body: string;
  contentId: string | undefined;
};

export type BatchPart = { kind: 'request'; request: BatchRequest } | { kind: 'changeset'; requests: BatchRequest[] };

export type BatchResponse = {
  status: number;
  headers: Record<string, string>;
  body: string | undefined;
  contentId?: string | undefined;
};

export type BatchResponsePart = { kind: 'response'; response: BatchResponse } | { kind: 'changeset'; responses: BatchResponse[] };

const payloadError = (detail: string) => new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: ${detail}`);

export function boundaryOf(contentType: string | undefined): string {
  const m = /^multipart\/mixed\s*;.*boundary\s*=\s*"?([^";]+)"?/i.exec(contentType ?? '');
  if (!m?.[1]) throw payloadError("the $batch request must be 'multipart/mixed' with a boundary.");
  return m[1];
}

/** Splits a multipart body into its raw parts (the text between boundary lines). */
function splitParts(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  const lines = body.split(/\r?\n/);
  const parts: string[] = [];
  let current: string[] | undefined;
  let closed = false;
  for (const line of lines) {
    const trimmed = line.trimEnd();
    if (trimmed === `${delimiter}--`) {
      if (current) parts.push(current.join('\r\n'));
      current = undefined;
      closed = true;
      break;
    }
    if (trimmed === delimiter) {
      if (current) parts.push(current.join('\r\n'));
      current = [];
      continue;
    }
    current?.push(line);
  }
  if (!closed) throw payloadError(`the multipart body is missing its closing boundary '--${boundary}--'.`);
  return parts;
}

function splitHead(text: string): { headers: Map<string, string>; rest: string; first?: string } {
  const lines = text.split(/\r?\n/);
  const headers = new Map<string, string>();
  let i = 0;
  while (i < lines.length && lines[i] === '') i += 1;
  for (; i < lines.length && lines[i] !== ''; i += 1) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, rest: lines.slice(i + 1).join('\r\n') };
}

function parseRequest(partText: string): BatchRequest {
  const outer = splitHead(partText);
  if (!/^application\/http/i.test(outer.headers.get('content-type') ?? '')) {
    throw payloadError("each batch part must be 'application/http' or a 'multipart/mixed' change set.");
  }
  const lines = outer.rest.split(/\r?\n/);
  let i = 0;
  while (i < lines.length && lines[i] === '') i += 1;
  const requestLine = /^(GET|POST|PATCH|PUT|DELETE)\s+(\S+)\s+HTTP\/1\.1$/.exec(lines[i]?.trim() ?? '');
  if (!requestLine) throw payloadError(`the batch part does not start with a request line: '${lines[i] ?? ''}'.`);
  const inner = splitHead(lines.slice(i + 1).join('\r\n'));
  return {
    method: requestLine[1]!,
    url: requestLine[2]!,
    headers: inner.headers,
    body: inner.rest.trim(),
    contentId: outer.headers.get('content-id') ?? inner.headers.get('content-id'),
  };
}

export function parseBatch(body: string, contentType: string | undefined): BatchPart[] {
  const parts: BatchPart[] = [];
  let operations = 0;
  for (const text of splitParts(body, boundaryOf(contentType))) {
    const head = splitHead(text);
    const type = head.headers.get('content-type') ?? '';
    if (/^multipart\/mixed/i.test(type)) {
      const requests = splitParts(head.rest, boundaryOf(type)).map(parseRequest);
      for (const r of requests) {
        if (r.method === 'GET') throw new SimHttpError(400, '0x80060888', 'GET requests are not allowed inside a change set.');
      }
      operations += requests.length;
      parts.push({ kind: 'changeset', requests });
    } else {
      operations += 1;
      parts.push({ kind: 'request', request: parseRequest(text) });
    }
  }
  if (operations > MAX_BATCH_OPERATIONS) {
    throw new SimHttpError(400, '0x80060888', `The number of requests in the batch (${operations}) exceeds the limit of ${MAX_BATCH_OPERATIONS}.`);
  }
  return parts;
}

const reasons: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function responseText(r: BatchResponse): string {
  const lines = ['Content-Type: application/http', 'Content-Transfer-Encoding: binary'];
  if (r.contentId !== undefined) lines.push(`Content-ID: ${r.contentId}`);
  lines.push('', `HTTP/1.1 ${r.status} ${reasons[r.status] ?? ''}`.trimEnd());
  for (const [k, v] of Object.entries(r.headers)) lines.push(`${k}: ${v}`);
  lines.push('', r.body ?? '');
  return lines.join('\r\n');
}

/** The multipart body of a batch response and its Content-Type header. */
export function serializeBatchResponse(parts: BatchResponsePart[]): { contentType: string; body: string } {
  const boundary = `batchresponse_${randomUUID()}`;
  const out: string[] = [];
  for (const part of parts) {
    out.push(`--${boundary}`);
    if (part.kind === 'response') {
      out.push(responseText(part.response));
      continue;
    }
    const inner = `changesetresponse_${randomUUID()}`;
    out.push(`Content-Type: multipart/mixed; boundary=${inner}`, '');
    for (const r of part.responses) out.push(`--${inner}`, responseText(r));
    out.push(`--${inner}--`);
  }
  out.push(`--${boundary}--`, '');
  return { contentType: `multipart/mixed; boundary=${boundary}`, body: out.join('\r\n') };
}
