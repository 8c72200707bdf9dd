import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runCampaign, type CampaignFigures } from '../src/chaos/campaign.ts';

// npm run chaos -- --seed 7 [--rounds 8] [--pairs 6] [--edits 14] [--kills 2]
// PostgreSQL when CHAOS_DATABASE_URL or TEST_DATABASE_URL is set (a fresh database per run), else
// PGlite in a temp DATA_DIR. Exits 1 on any loss, mismatch, duplicate or collision-rule violation.

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 100_000) },
    rounds: { type: 'string', default: '8' },
    pairs: { type: 'string', default: '6' },
    edits: { type: 'string', default: '14' },
    kills: { type: 'string', default: '2' },
  },
});

const figures: CampaignFigures = await runCampaign({
  seed: Number(values.seed),
  rounds: Number(values.rounds),
  pairsPerKind: Number(values.pairs),
  editsPerRound: Number(values.edits),
  kills: Number(values.kills),
  databaseUrl: process.env.CHAOS_DATABASE_URL ?? process.env.TEST_DATABASE_URL,
  baseEnv: process.env,
  projectRoot: fileURLToPath(new URL('..', import.meta.url)),
});

const shown: (keyof CampaignFigures)[] = [
  'seed', 'database', 'rounds', 'edits', 'collisionsScripted', 'events', 'eventsDone', 'eventsDead', 'retries', 'kills',
  'webhooksRefused', 'webhooksAborted', 'webhooksReplayed', 'faultsInjected', 'sweeps', 'pairsChecked',
  'mismatches', 'explainedDifferences', 'collisionViolations', 'duplicates', 'lost', 'durationSeconds',
];
console.log('');
for (const key of shown) console.log(`${key.padEnd(22)} ${String(figures[key])}`);
for (const problem of figures.problems) console.log(`PROBLEM: ${problem}`);
console.log(`service log: ${figures.logFile}`);
const failed = figures.lost + figures.mismatches + figures.duplicates + figures.collisionViolations > 0 || figures.problems.length > 0;
console.log(failed ? 'CHAOS FAILED' : 'CHAOS PASSED: nothing lost, nothing duplicated');
process.exit(failed ? 1 : 0);
