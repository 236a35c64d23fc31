/**
 * Help text that survives oclif's wrapping: the help plugin re-wraps every line to the terminal's
 * width, so a description hard-wrapped in the source comes out as ragged half-lines. `prose` joins
 * the lines of each paragraph (paragraphs are separated by a blank line) and leaves lines that start
 * with two spaces (examples, lists) as they are.
 */
export function prose(text: string): string {
  return text
    .trim()
    .split(/\n\s*\n/)
    .map((paragraph) =>
      paragraph
        .split('\n')
        .reduce<string[]>((lines, line) => {
          const last = lines.length - 1;
          if (last >= 0 && !line.startsWith('  ') && !lines[last]!.startsWith('  ')) lines[last] = `${lines[last]} ${line.trim()}`;
          else lines.push(line);
          return lines;
        }, [])
        .join('\n'),
    )
    .join('\n\n');
}
