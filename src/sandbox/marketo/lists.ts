import { decodeQueryToken, encodeQueryToken } from './marketo.paging.ts';

// Static lists (reference marketo §14): Get Leads by List Id, `GET /rest/v1/lists/{listId}/leads.json`,
// 300 a page at most (`batchSize` default and max 300), `nextPageToken` copied from the previous
// answer (the doc's example has no `moreResult`), `fields` as for other lead reads (default email,
// updatedAt, createdAt, lastName, firstName, id). Members come back in id order; a member deleted
// from Marketo is no longer on the list. The list id is the number in the UI URL (#ST1001A1 -> 1001).

/** What the lists need from the simulator that hosts them. */
export interface StaticListHost {
  /** throws the REST error the envelope carries */
  fail(code: string, message: string): never;
  /** a lead's requested fields, or null when it no longer exists */
  project(id: number, fields: readonly string[]): Record<string, unknown> | null;
  requestedFields(params: URLSearchParams, fallback: readonly string[]): readonly string[];
  parseBatchSize(params: URLSearchParams): number;
}

const LIST_DEFAULT_FIELDS = ['email', 'updatedAt', 'createdAt', 'lastName', 'firstName', 'id'] as const;

export function createStaticLists(host: StaticListHost) {
  const lists = new Map<number, { name: string; members: Set<number> }>();
  let nextId = 1001;

  function listOf(raw: string) {
    const list = lists.get(Number(raw));
    return list ?? host.fail('1013', 'Static list not found');
  }

  return {
    routes: [
      {
        endpoint: 'lists.leads' as const,
        pattern: /^\/rest\/v1\/lists\/(\d+)\/leads\.json$/,
        methods: {
          GET: (ctx: { params: URLSearchParams }, match: RegExpExecArray) => {
            const listId = match[1]!;
            const list = listOf(listId);
            const fields = host.requestedFields(ctx.params, LIST_DEFAULT_FIELDS);
            const batchSize = host.parseBatchSize(ctx.params);
            const queryKey = `list:${listId}:${fields.join(',')}`;
            const raw = ctx.params.get('nextPageToken');
            let after = 0;
            if (raw) {
              const decoded = decodeQueryToken(raw, queryKey);
              if (decoded === undefined) return host.fail('1003', 'Invalid nextPageToken');
              after = decoded;
            }
            // keyed on the last id served, so members added or removed meanwhile shift nothing
            const ids = [...list.members].filter((id) => id > after).sort((a, b) => a - b);
            const result: Record<string, unknown>[] = [];
            let last = after;
            for (const id of ids) {
              if (result.length === batchSize) break;
              last = id;
              const lead = host.project(id, fields);
              if (lead) result.push(lead);
              else list.members.delete(id);
            }
            const more = ids.some((id) => id > last);
            return { result, ...(more ? { nextPageToken: encodeQueryToken(last, queryKey) } : {}) };
          },
        },
      },
    ],
    admin: {
      /** a static list of these persons (a marketer's import or a trade-show list); its id */
      createList(name: string, leadIds: readonly number[] = []): number {
        const id = nextId++;
        lists.set(id, { name, members: new Set(leadIds) });
        return id;
      },
      addToList(listId: number, leadIds: readonly number[]): void {
        const list = lists.get(listId);
        if (!list) throw new Error(`no static list ${listId}`);
        for (const id of leadIds) list.members.add(id);
      },
      listMembers(listId: number): number[] {
        return [...(lists.get(listId)?.members ?? [])].sort((a, b) => a - b);
      },
      resetLists(): void {
        lists.clear();
      },
    },
  };
}
