import type { ObjectRef } from '@pothos/core';
import { badInput, type Builder, type Types } from './builder.ts';

// Relay connections over keyset cursors. A cursor names the last row seen (its id), never an
// offset, so rows inserted while a client pages (new activities arrive all the time) neither
// repeat nor go missing. Cursors are opaque: base64url of [kind, id], checked on the way in.

export interface Edge<T> {
  node: T;
  cursor: string;
}

export interface Connection<T> {
  edges: Edge<T>[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export type CursorKind = 'activity' | 'link' | 'event' | 'run' | 'audit';

export const DEFAULT_PAGE = 20;
export const MAX_PAGE = 100;

export function encodeCursor(kind: CursorKind, id: string): string {
  return Buffer.from(JSON.stringify([kind, id])).toString('base64url');
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (value: string) => uuidPattern.test(value);

/** The id inside a cursor of this kind; a bad or foreign cursor is the caller's error. */
export function decodeCursor(kind: CursorKind, cursor: string | null | undefined): string | undefined {
  if (cursor === null || cursor === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badInput('invalid cursor: pass a cursor from this list\'s pageInfo.endCursor or edges.cursor');
  }
  const valid =
    Array.isArray(parsed) &&
    parsed.length === 2 &&
    parsed[0] === kind &&
    typeof parsed[1] === 'string' &&
    (kind === 'activity' ? /^\d{1,19}$/.test(parsed[1]) : isUuid(parsed[1]));
  if (!valid) throw badInput('invalid cursor: pass a cursor from this list\'s pageInfo.endCursor or edges.cursor');
  return (parsed as [string, string])[1];
}

export function pageSize(first: number | null | undefined): number {
  if (first === null || first === undefined) return DEFAULT_PAGE;
  if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE) throw badInput(`first must be between 1 and ${MAX_PAGE}`);
  return first;
}

/** Builds a page from rows fetched with `take: size + 1` (the extra row only says "there is more"). */
export function toConnection<T>(rows: readonly T[], size: number, kind: CursorKind, idOf: (row: T) => string): Connection<T> {
  const page = rows.slice(0, size);
  const edges = page.map((node) => ({ node, cursor: encodeCursor(kind, idOf(node)) }));
  return { edges, pageInfo: { hasNextPage: rows.length > size, endCursor: edges.at(-1)?.cursor ?? null } };
}

export function addPageInfo(builder: Builder) {
  return builder.objectRef<Connection<unknown>['pageInfo']>('PageInfo').implement({
    description: 'Where a page ends. Pass `endCursor` as `after` to get the next page.',
    fields: (t) => ({
      hasNextPage: t.exposeBoolean('hasNextPage', { description: 'true when more rows follow this page' }),
      endCursor: t.exposeString('endCursor', { nullable: true, description: 'the cursor of the last edge; null on an empty page' }),
    }),
  });
}

export type PageInfoRef = ReturnType<typeof addPageInfo>;

export function addConnection<T>(builder: Builder, pageInfo: PageInfoRef, name: string, node: ObjectRef<Types, T>, description: string) {
  const edge = builder.objectRef<Edge<T>>(`${name}Edge`).implement({
    description: `One ${name} in a page.`,
    fields: (t) => ({
      node: t.expose('node', { type: node }),
      cursor: t.exposeString('cursor', { description: 'opaque; pass as `after` to continue after this edge' }),
    }),
  });
  return builder.objectRef<Connection<T>>(`${name}Connection`).implement({
    description,
    fields: (t) => ({
      edges: t.field({ type: [edge], resolve: (c) => c.edges }),
      pageInfo: t.field({ type: pageInfo, resolve: (c) => c.pageInfo }),
    }),
  });
}
