import type { PrismaClient } from '../db/generated/client.ts';
import type { Suppressions } from '../security/suppression.ts';
import { lockHolder, lockWithin, personKey, recordKey, unlock } from '../sync/locks.ts';

// Erasure on request (GDPR art. 17, CCPA deletion): every row of this store that holds a value of
// one person goes. That is the person's link (its snapshot, field origins and refused values),
// every activity log entry about them (field values, messages), every change event (webhook
// payloads) and the create journal, found by the Marketo id, the Dynamics id and the link. Marketo
// and Dynamics are not touched: erasing the person there is the vendors' own process.
//
// The erasure lasts: the person's identifiers (emails, Marketo and Dynamics ids) go on the
// suppression list as keyed hashes (security/suppression.ts), so the sweep, the next webhook and
// Sync Person skip them until an admin lifts the entry. It runs under the person's record leases
// (the engine's and Sync Person's), so a sync in flight cannot write rows back after the delete:
// the list is written first, and whoever takes the leases next finds the person suppressed.

export interface ForgetRequest {
  marketoId?: number | undefined;
  dynamicsId?: string | undefined;
  /** the person's email, when known: listed too, so a new record with it is not linked either */
  email?: string | undefined;
}

export interface ForgetResult {
  links: number;
  activities: number;
  changeEvents: number;
}

export type ForgetOutcome =
  | { ok: true; removed: ForgetResult; erasureId: string; pseudonyms: string[] }
  | { ok: false; error: string };

export interface ForgetOptions {
  suppressions: Suppressions;
  /** this replica's name: the leases are held under a holder derived from it */
  owner: string;
  leaseMs: number;
  /** how long to wait for a sync in flight to let go of the person; default 30 s */
  waitMs?: number;
}

const EMAIL = /^[^\s@]+@[^\s@]+$/;

/**
 * The person's ids: the given ones, those of their link, and the records their activity log
 * links them to (a lead qualified into a contact keeps the lead's id in older entries); emails
 * from the link's snapshot.
 */
async function personIds(prisma: PrismaClient, request: ForgetRequest) {
  const marketoIds = new Set<number>(request.marketoId !== undefined ? [request.marketoId] : []);
  const dynamicsIds = new Set<string>(request.dynamicsId !== undefined ? [request.dynamicsId.toLowerCase()] : []);
  const emails = new Set<string>(request.email ? [request.email.trim().toLowerCase()] : []);
  const links = await prisma.syncLink.findMany({
    where: { OR: [{ marketoId: { in: [...marketoIds] } }, { dynamicsId: { in: [...dynamicsIds] } }] },
    select: { id: true, marketoId: true, dynamicsId: true, snapshot: true },
  });
  for (const link of links) {
    marketoIds.add(link.marketoId);
    dynamicsIds.add(link.dynamicsId);
    for (const value of Object.values((link.snapshot ?? {}) as Record<string, unknown>)) {
      if (typeof value === 'string' && EMAIL.test(value.trim())) emails.add(value.trim().toLowerCase());
    }
  }
  const related = await prisma.activity.findMany({
    where: { OR: [{ marketoId: { in: [...marketoIds] } }, { dynamicsId: { in: [...dynamicsIds] } }] },
    select: { marketoId: true, dynamicsId: true },
    distinct: ['marketoId', 'dynamicsId'],
  });
  for (const entry of related) {
    if (entry.marketoId !== null) marketoIds.add(entry.marketoId);
    if (entry.dynamicsId !== null) dynamicsIds.add(entry.dynamicsId);
  }
  return { marketoIds: [...marketoIds], dynamicsIds: [...dynamicsIds], emails: [...emails], linkIds: links.map((l) => l.id) };
}

export async function forgetPerson(prisma: PrismaClient, request: ForgetRequest, options: ForgetOptions): Promise<ForgetOutcome> {
  const found = await personIds(prisma, request);
  const keys = [...found.marketoIds.map(personKey), ...found.dynamicsIds.map(recordKey)];
  const holder = lockHolder(options.owner);
  if (!(await lockWithin(prisma, keys, holder, { leaseMs: options.leaseMs, waitMs: options.waitMs ?? 30_000 }))) {
    return { ok: false, error: 'the person is being synced right now and did not let go in time; try again shortly' };
  }
  try {
    // listed first: from here on nothing links or logs them again, whatever else is in flight
    const { erasureId } = await options.suppressions.add(found);
    // read again under the leases: a link made meanwhile is found too
    const { marketoIds, dynamicsIds, linkIds } = await personIds(prisma, { ...request, marketoId: found.marketoIds[0] ?? request.marketoId });
    const allMarketo = [...new Set([...found.marketoIds, ...marketoIds])];
    const allDynamics = [...new Set([...found.dynamicsIds, ...dynamicsIds])];
    const allLinks = [...new Set([...found.linkIds, ...linkIds])];
    const about = { OR: [{ marketoId: { in: allMarketo } }, { dynamicsId: { in: allDynamics } }, { linkId: { in: allLinks } }] };
    // one short transaction: the person disappears at once, never half
    const [activities, changeEvents, links] = await prisma.$transaction([
      prisma.activity.deleteMany({ where: about }),
      prisma.changeEvent.deleteMany({ where: about }),
      prisma.syncLink.deleteMany({ where: { id: { in: allLinks } } }),
      // the create journal holds the person's email and values too
      prisma.createIntent.deleteMany({ where: { OR: [{ marketoId: { in: allMarketo } }, { dynamicsId: { in: allDynamics } }] } }),
      // a batch's outcome of the person names their ids and Dynamics' message about them
      prisma.batchSyncItem.deleteMany({ where: { OR: [{ marketoId: { in: allMarketo } }, { dynamicsId: { in: allDynamics } }] } }),
    ]);
    const s = options.suppressions;
    const pseudonyms = [
      ...allMarketo.map((id) => s.pseudonym('MARKETO_ID', id)),
      ...allDynamics.map((id) => s.pseudonym('DYNAMICS_ID', id)),
      ...found.emails.map((e) => s.pseudonym('EMAIL', e)),
    ];
    return { ok: true, removed: { links: links.count, activities: activities.count, changeEvents: changeEvents.count }, erasureId, pseudonyms };
  } finally {
    await unlock(prisma, keys, holder);
  }
}
