import type { PrismaClient } from '../db/generated/client.ts';

// Erasure on request (GDPR art. 17, CCPA deletion): every row of this store that holds a value of
// one person goes. That is the person's link (its snapshot, field origins and refused values),
// every activity log entry about them (field values, messages) and every change event (webhook
// payloads), found by the Marketo id, the Dynamics id and the link. Marketo and Dynamics are not
// touched: erasing the person there is the vendors' own process. If the person still exists in
// both systems, the next sweep links them again and a new history starts; so erase there first.

export interface ForgetRequest {
  marketoId?: number | undefined;
  dynamicsId?: string | undefined;
}

export interface ForgetResult {
  links: number;
  activities: number;
  changeEvents: number;
}

/**
 * The person's ids: the given ones, those of their link, and the records their activity log
 * links them to (a lead qualified into a contact keeps the lead's id in older entries).
 */
async function personIds(prisma: PrismaClient, request: ForgetRequest) {
  const marketoIds = new Set<number>(request.marketoId !== undefined ? [request.marketoId] : []);
  const dynamicsIds = new Set<string>(request.dynamicsId !== undefined ? [request.dynamicsId.toLowerCase()] : []);
  const links = await prisma.syncLink.findMany({
    where: { OR: [{ marketoId: { in: [...marketoIds] } }, { dynamicsId: { in: [...dynamicsIds] } }] },
    select: { id: true, marketoId: true, dynamicsId: true },
  });
  for (const link of links) {
    marketoIds.add(link.marketoId);
    dynamicsIds.add(link.dynamicsId);
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
  return { marketoIds: [...marketoIds], dynamicsIds: [...dynamicsIds], linkIds: links.map((l) => l.id) };
}

export async function forgetPerson(prisma: PrismaClient, request: ForgetRequest): Promise<ForgetResult> {
  const { marketoIds, dynamicsIds, linkIds } = await personIds(prisma, request);
  const about = { OR: [{ marketoId: { in: marketoIds } }, { dynamicsId: { in: dynamicsIds } }, { linkId: { in: linkIds } }] };
  // one short transaction: the person disappears at once, never half
  const [activities, changeEvents, links] = await prisma.$transaction([
    prisma.activity.deleteMany({ where: about }),
    prisma.changeEvent.deleteMany({ where: about }),
    prisma.syncLink.deleteMany({ where: { id: { in: linkIds } } }),
    // the create journal holds the person's email and values too
    prisma.createIntent.deleteMany({ where: { OR: [{ marketoId: { in: marketoIds } }, { dynamicsId: { in: dynamicsIds } }] } }),
  ]);
  return { links: links.count, activities: activities.count, changeEvents: changeEvents.count };
}
