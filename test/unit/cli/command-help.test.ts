/**
 * The help of every client command, checked from the command classes themselves: descriptions are
 * prose that oclif can wrap (no hard line breaks inside a paragraph), no `@default` artefacts, and
 * every flag an example uses exists on the command it runs (the shell around it, `$(...)`
 * substitutions and pipes, belongs to other commands and is skipped).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from '@oclif/core';
import { describe, expect, it } from 'vitest';

const commandsDir = join(import.meta.dirname, '../../../src/commands');
const files = readdirSync(commandsDir).filter((f) => f.endsWith('.ts'));

type CommandClass = typeof Command & { flags?: Record<string, { aliases?: string[]; char?: string }> };

async function load(file: string): Promise<CommandClass> {
  return ((await import(join(commandsDir, file))) as { default: CommandClass }).default;
}

/** The flag names (`--x`, `-o`) used by the segment of `example` that runs this command. */
export function exampleFlags(example: string): string[] {
  const own = example
    .replace(/\$\([^)]*\)/g, 'SUBST')
    .split(/;|\|/)
    .find((segment) => segment.includes('<%= command.id %>'));
  if (!own) return [];
  const afterId = own.slice(own.indexOf('<%= command.id %>') + '<%= command.id %>'.length);
  const words = afterId.split(/\s+/);
  const end = words.indexOf('--');
  return (end === -1 ? words : words.slice(0, end)).filter((w) => /^--?[A-Za-z]/.test(w)).map((w) => w.split('=')[0]!);
}

describe('client command help', () => {
  it('finds the commands', () => {
    expect(files).toEqual(expect.arrayContaining(['execute.ts', 'get_operation.ts', 'reproduce.ts', 'diff_actions.ts']));
  });

  for (const file of files) {
    it(`${file}: prose description, no @default, examples use existing flags`, async () => {
      const cmd = await load(file);
      const texts = [cmd.summary ?? '', cmd.description ?? '', ...Object.values(cmd.flags ?? {}).map((f) => (f as { summary?: string }).summary ?? '')];
      for (const text of texts) expect(text).not.toContain('@default');
      // A single newline between two non-indented lines is a hard wrap oclif would break.
      expect(cmd.description ?? '').not.toMatch(/[^\n]\n(?! {2}|\n)/);

      const known = new Set(['--json', '--help']);
      for (const [name, flag] of Object.entries(cmd.flags ?? {})) {
        known.add(`--${name}`);
        for (const alias of flag.aliases ?? []) known.add(`--${alias}`);
        if (flag.char) known.add(`-${flag.char}`);
      }
      const examples = (cmd.examples ?? []).map((e) => (typeof e === 'string' ? e : e.command));
      expect(examples.length).toBeGreaterThan(0);
      for (const example of examples) {
        for (const flag of exampleFlags(example)) expect(known, `${flag} in ${example}`).toContain(flag);
      }
    });
  }

  it('parses the flags of an example, skipping other commands and the argv after --', () => {
    expect(exampleFlags('op=$(bzutil execute --action=x --json | jq -r .name); <%= config.bin %> <%= command.id %> --name=$op --fail_on_nonzero')).toEqual([
      '--name',
      '--fail_on_nonzero',
    ]);
    expect(exampleFlags('<%= config.bin %> <%= command.id %> --env A=1 -o out -- sh -c "x --y"')).toEqual(['--env', '-o']);
  });
});
