/**
 * Entry point of `npm run bench`. The bench sources are compiled to `dist-bench/` together with a
 * copy of `src/`; tsc does not copy the generated protobuf code (`protos.cjs`), so it is copied here
 * before anything that loads it is imported.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDistDir = dirname(fileURLToPath(import.meta.url));
const generated = 'src/lib/proto/generated/protos.cjs';
const target = join(benchDistDir, '..', generated);
mkdirSync(dirname(target), { recursive: true });
copyFileSync(join(benchDistDir, '../..', generated), target);

const { main } = await import('./harness.js');
process.exitCode = await main(process.argv.slice(2));
