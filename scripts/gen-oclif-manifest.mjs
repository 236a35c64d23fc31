#!/usr/bin/env node
// Writes oclif.manifest.json (git-ignored) from the compiled commands under dist/commands, as
// `oclif manifest` does when a CLI is packed. Without it oclif imports every command module (and
// all they import: client, worker, scheduler...) on every start only to list them; with it a run
// loads the one command it runs. Rebuilt by every `npm run build`; never edit it by hand.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Plugin } from '@oclif/core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const plugin = new Plugin({ root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true });
await plugin.load();
writeFileSync(join(root, 'oclif.manifest.json'), `${JSON.stringify(plugin.manifest)}\n`);
