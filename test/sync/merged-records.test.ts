import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDataverseWebhook } from '../../src/connectors/dynamics/index.ts';
import type { Link } from '../../src/sync/links.ts';
import { decideMerge, mergedEvent, mergeNoticeOf, parseMergeIds, type MergeNotice } from '../../src/sync/merged-records.ts';

const sample = JSON.parse(readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const MASTER = '6d81597f-0f9f-e711-8122-000d3aa2331c';
const SUBORDINATE = '0b7e9a4c-1d2e-4f30-9a8b-7c6d5e4f3a21';

function link(marketoId: number, dynamicsId: string, entity: Link['entity'] = 'CONTACT'): Link {
  return { id: `link-${marketoId}`, marketoId, entity, dynamicsId, status: 'ACTIVE', snapshot: {}, fieldOrigins: {}, blocked: {}, dynamicsEtag: null, revision: 0, lastSyncedAt: null };
}

describe('decideMerge', () => {
  const marketo: MergeNotice = { side: 'MARKETO', winnerId: 1, loserIds: [2, 3] };
  const dynamics: MergeNotice = { side: 'DYNAMICS', entity: 'CONTACT', masterId: MASTER, subordinateId: SUBORDINATE };

  it('moves the one linked loser to an unlinked winner', () => {
    const loser = link(2, SUBORDINATE);
    expect(decideMerge(marketo, [loser])).toEqual({ kind: 'move', link: loser });
  });

  it('moves the subordinate’s link to an unlinked master', () => {
    const sub = link(7, SUBORDINATE);
    expect(decideMerge(dynamics, [sub])).toEqual({ kind: 'move', link: sub });
  });

  it('moves nothing when no merged-away record was linked, and names the survivor’s link to sync', () => {
    const survivor = link(1, MASTER);
    expect(decideMerge(marketo, [survivor])).toEqual({ kind: 'nothing_linked', survivor });
    expect(decideMerge(marketo, [])).toEqual({ kind: 'nothing_linked', survivor: null });
  });

  it('is a conflict naming every pair when two linked pairs would end on one survivor', () => {
    for (const links of [[link(2, SUBORDINATE), link(3, MASTER)], [link(1, MASTER), link(2, SUBORDINATE)]]) {
      const decision = decideMerge(marketo, links);
      if (decision.kind !== 'conflict') throw new Error(`expected a conflict, got ${decision.kind}`);
      expect(decision.links.map((l) => l.marketoId).sort()).toEqual(links.map((l) => l.marketoId).sort());
      expect(decision.message).toContain(MASTER);
      expect(decision.message).toContain(SUBORDINATE);
    }
    expect(decideMerge(dynamics, [link(1, MASTER), link(2, SUBORDINATE)]).kind).toBe('conflict');
  });
});

describe('merge notices', () => {
  it('round-trip through their inbox event', () => {
    for (const notice of [
      { side: 'MARKETO', winnerId: 10, loserIds: [11, 12] },
      { side: 'DYNAMICS', entity: 'LEAD', masterId: MASTER, subordinateId: SUBORDINATE },
    ] satisfies MergeNotice[]) {
      const event = mergedEvent(notice, { origin: 'SWEEP', dedupeKey: 'k' });
      expect(mergeNoticeOf({ source: event.source, marketoId: event.marketoId ?? null, dynamicsEntity: event.dynamicsEntity ?? null, dynamicsId: event.dynamicsId ?? null, payload: event.payload })).toEqual(notice);
    }
  });

  it('read the losers out of "Merge IDs" whatever separates them, never the winner twice', () => {
    expect(parseMergeIds('11,12')).toEqual([11, 12]);
    expect(parseMergeIds('[11, 12, 11]')).toEqual([11, 12]);
    expect(parseMergeIds(13)).toEqual([13]);
    expect(parseMergeIds(null)).toEqual([]);
  });

  it('parses a Dataverse Merge step: Target the master, SubordinateId the merged-away row', () => {
    const body = {
      ...sample,
      MessageName: 'Merge',
      InputParameters: [
        { key: 'Target', value: { __type: 'EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts', Id: MASTER, LogicalName: 'contact', Name: null } },
        { key: 'SubordinateId', value: SUBORDINATE.toUpperCase() },
        { key: 'PerformParentingChecks', value: false },
      ],
      PostEntityImages: [],
    };
    const parsed = parseDataverseWebhook(body);
    if (!parsed.ok) throw new Error(parsed.message);
    expect(parsed.notice).toMatchObject({ messageName: 'Merge', entity: 'contact', id: MASTER, subordinateId: SUBORDINATE });
    const without = parseDataverseWebhook({ ...body, InputParameters: body.InputParameters.filter((p) => p.key !== 'SubordinateId') });
    expect(without.ok).toBe(false);
  });
});
