#!/usr/bin/env node
// The bzutil CLI. Commands are compiled to dist/commands by `npm run build`.
import { execute } from '@oclif/core';

await execute({ dir: import.meta.url });
