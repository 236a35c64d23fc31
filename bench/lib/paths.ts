/**
 * Where things are at run time. The bench sources are compiled to `dist-bench/bench/`, next to a
 * compiled copy of `src/` in `dist-bench/src/`; the servers under test run from the regular build
 * (`bin/run.js` -> `dist/`), exactly as users run them.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `dist-bench/bench`: the compiled bench entry points. */
export const benchDistDir = dirname(dirname(fileURLToPath(import.meta.url)));
export const repoRoot = join(benchDistDir, '../..');
export const binPath = join(repoRoot, 'bin/run.js');
export const resultsDir = join(repoRoot, 'bench/results');
export const driverPath = join(benchDistDir, 'driver.js');
export const rawServerPath = join(benchDistDir, 'baseline/raw-server.js');
