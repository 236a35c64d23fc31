#!/usr/bin/env node
// Development entry: oclif loads TypeScript sources from src/commands when a TypeScript loader
// (ts-node or tsx) is available, and otherwise falls back to the compiled dist/commands.
import { execute } from '@oclif/core';

await execute({ development: true, dir: import.meta.url });
