import type { SandboxSeed } from '../sandbox/seed.ts';

// The block `npm start` prints once in sandbox mode. It leads a newcomer through the operator
// console (sign in, find a person, make a change in a simulator and watch it arrive); curl is
// only for the simulators, which stand in for the CRM user and the marketer.

export interface BannerOptions {
  url: string;
  marketoUrl: string;
  dataverseUrl: string;
  marketoWebhookSecret: string;
  graphqlToken: string;
  seed: SandboxSeed;
}

export function consoleBanner(o: BannerOptions): string {
  const contact = o.seed.contacts.find((c) => c.marketoId !== null) ?? o.seed.contacts[0];
  const candidate = o.seed.marketoOnly[0];
  const rule = '-'.repeat(100);
  return [
    rule,
    'SANDBOX READY: simulated Marketo and Dynamics 365, seeded with',
    `  ${o.seed.contacts.length} Dynamics contacts and ${o.seed.leads.length} leads linked to Marketo persons by the initial sync,`,
    `  ${o.seed.marketoOnly.length} Marketo-only persons ready for "Sync Person to Microsoft".`,
    '',
    `  operator console         ${o.url}/`,
    `  API token (sign-in)      ${o.graphqlToken}`,
    `  GraphQL API              ${o.url}/graphql   (Authorization: Bearer <token>; docs/graphql-cookbook.md)`,
    `  Marketo webhook secret   ${o.marketoWebhookSecret}   (X-Webhook-Secret; generated for this run)`,
    '',
    'What to try:',
    `1. Open ${o.url}/ and sign in with the API token above.`,
    `2. Find a person: type ${contact?.email ?? 'an email'} in "Find a person". Both records side by side, field by field,`,
    '   with who set each value last, when, and through which event.',
    `3. Be the CRM user: change that contact's job title in the Dynamics simulator, then reload the person:`,
    `curl -sS -X PATCH ${o.dataverseUrl}/__admin/records/contact/${contact?.dynamicsId ?? '?'} -H 'content-type: application/json' -d '{"jobtitle": "Chief Operating Officer"}'`,
    `4. Be the marketer: "Sync Person to Microsoft" for ${candidate?.name ?? '?'} (Marketo person ${candidate?.marketoId ?? '?'}):`,
    `curl -sS -X POST ${o.url}/webhooks/marketo/sync-person -H 'content-type: application/json' -H 'x-webhook-secret: ${o.marketoWebhookSecret}' -d '{"marketoId": ${candidate?.marketoId ?? 0}, "syncAs": "lead"}'`,
    '   then watch it in the Work queue, the Timeline and Throughput views.',
    '5. Sweeps: "Run a sweep now". Field mappings: change a field\'s winner or disable it.',
    '',
    'The whole story (collisions, a validation rejection): npm run demo. Guides: README.md ("Your first hour").',
    rule,
  ].join('\n') + '\n';
}
