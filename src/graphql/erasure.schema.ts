import { forgetPerson, type ForgetResult } from '../retention/forget.ts';
import type { Builder } from './builder.ts';
import { parseDynamicsId, parseMarketoId } from './links.schema.ts';

// forgetPerson: erasure on request. Its audit entry is the tombstone: the action, the token and
// the time, how many rows went, and no argument (the ids would say whom it was about).

type ForgetPayload = { ok: boolean; error: string | null; removed: ForgetResult | null };

export function addErasureSchema(builder: Builder) {
  const Removed = builder.objectRef<ForgetResult>('ForgottenRows').implement({
    description: 'How many stored rows held the person\'s data and were deleted.',
    fields: (t) => ({
      links: t.exposeInt('links'),
      activities: t.exposeInt('activities'),
      changeEvents: t.exposeInt('changeEvents'),
    }),
  });
  const Payload = builder.objectRef<ForgetPayload>('ForgetPersonPayload').implement({
    description: 'The answer to forgetPerson.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok'),
      error: t.exposeString('error', { nullable: true }),
      removed: t.field({ type: Removed, nullable: true, resolve: (p) => p.removed }),
    }),
  });

  builder.mutationFields((t) => ({
    forgetPerson: t.field({
      type: Payload,
      description:
        'Erases a person from this service (GDPR/CCPA): their link and its snapshot, their activity log and their change events. ' +
        'Marketo and Dynamics are not touched. If the person still exists there, the next sweep links them again. ' +
        'Leaves an audit entry without the ids.',
      args: {
        marketoId: t.arg.id({ required: false }),
        dynamicsId: t.arg.id({ required: false, description: 'the lead or contact id' }),
      },
      extensions: { audit: { args: false, result: (p: ForgetPayload) => ({ removed: p.removed }) } },
      resolve: async (_root, args, ctx) => {
        if (!args.marketoId && !args.dynamicsId) return { ok: false, error: 'pass marketoId or dynamicsId', removed: null };
        let marketoId: number | undefined;
        let dynamicsId: string | undefined;
        try {
          // the API's one reading of ids: an irreversible delete takes no looser one
          marketoId = args.marketoId ? parseMarketoId(args.marketoId) : undefined;
          dynamicsId = args.dynamicsId ? parseDynamicsId(args.dynamicsId) : undefined;
        } catch (error) {
          return { ok: false, error: (error as Error).message, removed: null };
        }
        return { ok: true, error: null, removed: await forgetPerson(ctx.prisma, { marketoId, dynamicsId }) };
      },
    }),
  }));
}
