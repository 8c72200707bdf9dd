import { forgetPerson, type ForgetResult } from '../retention/forget.ts';
import type { SuppressionEntry } from '../security/suppression.ts';
import type { Builder } from './builder.ts';
import { parseDynamicsId, parseMarketoId } from './links.schema.ts';

// forgetPerson: erasure on request, and the erasure list that makes it last. Its audit entry is
// the tombstone: the action, the token, the time, how many rows went and the pseudonyms (keyed
// hashes) of the identifiers, never an id or an email. Both mutations need an admin token.

type ForgetPayload = { ok: boolean; error: string | null; removed: ForgetResult | null; erasureId: string | null; pseudonyms: string[] };
type LiftPayload = { ok: boolean; error: string | null; lifted: number };

const EMAIL = /^[^\s@]{1,200}@[^\s@]{1,200}$/;

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
      erasureId: t.exposeID('erasureId', { nullable: true, description: 'the erasure list entry; liftErasure takes it' }),
      pseudonyms: t.exposeStringList('pseudonyms', { description: 'keyed hashes of the erased identifiers, as the audit entry keeps them' }),
    }),
  });
  const Identifier = builder.objectRef<SuppressionEntry['identifiers'][number]>('ErasedIdentifier').implement({
    description: 'One identifier of an erased person, as a pseudonym.',
    fields: (t) => ({
      kind: t.exposeString('kind', { description: 'EMAIL, MARKETO_ID or DYNAMICS_ID' }),
      pseudonym: t.exposeString('pseudonym'),
    }),
  });
  const Erasure = builder.objectRef<SuppressionEntry>('Erasure').implement({
    description: 'An entry of the erasure list: the sweep, webhooks, matching and Sync Person skip these identifiers.',
    fields: (t) => ({
      id: t.exposeID('erasureId'),
      createdAt: t.field({ type: 'DateTime', resolve: (e) => e.createdAt }),
      identifiers: t.field({ type: [Identifier], resolve: (e) => e.identifiers }),
    }),
  });
  const LiftPayloadRef = builder.objectRef<LiftPayload>('LiftErasurePayload').implement({
    description: 'The answer to liftErasure.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok'),
      error: t.exposeString('error', { nullable: true }),
      lifted: t.exposeInt('lifted', { description: 'identifiers removed from the list' }),
    }),
  });

  builder.queryFields((t) => ({
    erasures: t.field({
      type: [Erasure],
      description: 'The erasure list, newest first: pseudonyms only, never an id or an email.',
      resolve: (_root, _args, ctx) => ctx.deps.erasure.suppressions.list(),
    }),
  }));

  builder.mutationFields((t) => ({
    forgetPerson: t.field({
      type: Payload,
      description:
        'Erases a person from this service (GDPR/CCPA), admin scope: their link and its snapshot, their activity log, their change events and create journal, ' +
        'under the person\'s record leases. Their identifiers (ids, and emails) go on the erasure list as keyed hashes, so the sweep, webhooks, ' +
        'matching and Sync Person do not link or log them again until liftErasure. Marketo and Dynamics are not touched. ' +
        'Leaves an audit entry with pseudonyms, without the ids.',
      args: {
        marketoId: t.arg.id({ required: false }),
        dynamicsId: t.arg.id({ required: false, description: 'the lead or contact id' }),
        email: t.arg.string({ required: false, description: 'listed too, so a new record with this email is not linked' }),
      },
      extensions: { audit: { scope: 'admin', args: false, result: (p: ForgetPayload) => ({ removed: p.removed, erasureId: p.erasureId, pseudonyms: p.pseudonyms }) } },
      resolve: async (_root, args, ctx) => {
        const refuse = (error: string): ForgetPayload => ({ ok: false, error, removed: null, erasureId: null, pseudonyms: [] });
        if (!args.marketoId && !args.dynamicsId) return refuse('pass marketoId or dynamicsId');
        let marketoId: number | undefined;
        let dynamicsId: string | undefined;
        try {
          // the API's one reading of ids: an irreversible delete takes no looser one
          marketoId = args.marketoId ? parseMarketoId(args.marketoId) : undefined;
          dynamicsId = args.dynamicsId ? parseDynamicsId(args.dynamicsId) : undefined;
        } catch (error) {
          return refuse((error as Error).message);
        }
        const email = args.email?.trim() || undefined;
        if (email !== undefined && !EMAIL.test(email)) return refuse('email is not an email address');
        const outcome = await forgetPerson(ctx.prisma, { marketoId, dynamicsId, email }, ctx.deps.erasure);
        if (!outcome.ok) return refuse(outcome.error);
        return { ok: true, error: null, removed: outcome.removed, erasureId: outcome.erasureId, pseudonyms: outcome.pseudonyms };
      },
    }),
    liftErasure: t.field({
      type: LiftPayloadRef,
      description:
        'Takes an erased person off the erasure list (admin scope), by the erasure\'s id or by any one of its identifiers: ' +
        'from then on the sweep and webhooks may link and log them again.',
      args: {
        erasureId: t.arg.id({ required: false }),
        marketoId: t.arg.id({ required: false }),
        dynamicsId: t.arg.id({ required: false }),
        email: t.arg.string({ required: false }),
      },
      extensions: { audit: { scope: 'admin', args: false, result: (p: LiftPayload) => ({ lifted: p.lifted }) } },
      resolve: async (_root, args, ctx) => {
        const { suppressions } = ctx.deps.erasure;
        const given = [args.erasureId, args.marketoId, args.dynamicsId, args.email].filter((v) => v !== null && v !== undefined && v !== '');
        if (given.length !== 1) return { ok: false, error: 'pass exactly one of erasureId, marketoId, dynamicsId, email', lifted: 0 };
        let lifted: number;
        try {
          if (args.erasureId) {
            if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(args.erasureId)) return { ok: false, error: 'erasureId is not an erasure id', lifted: 0 };
            lifted = await suppressions.lift({ erasureId: args.erasureId.toLowerCase() });
          } else if (args.marketoId) lifted = await suppressions.lift({ kind: 'MARKETO_ID', value: parseMarketoId(args.marketoId) });
          else if (args.dynamicsId) lifted = await suppressions.lift({ kind: 'DYNAMICS_ID', value: parseDynamicsId(args.dynamicsId) });
          else lifted = await suppressions.lift({ kind: 'EMAIL', value: String(args.email) });
        } catch (error) {
          return { ok: false, error: (error as Error).message, lifted: 0 };
        }
        return lifted > 0 ? { ok: true, error: null, lifted } : { ok: false, error: 'no such erasure on the list', lifted: 0 };
      },
    }),
  }));
}
