import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.e2e.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The machines here have two cores; the Bazel tier runs alone in its own file.
    maxWorkers: 2,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
