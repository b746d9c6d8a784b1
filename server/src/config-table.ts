import { configTable } from './config.js';

/** `npm run config:table`: prints the README's configuration table. */
process.stdout.write(`${configTable()}\n`);
