import { configTable, envExample } from './config.js';

/**
 * `npm run config:table`: prints the README's configuration table;
 * `npm run config:env-example`: prints `.env.example`.
 */
process.stdout.write(process.argv.includes('--env-example') ? envExample() : `${configTable()}\n`);
