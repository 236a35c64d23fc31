/**
 * Source-like test data: lines of TypeScript-looking text that vary with their index and `seed`, so
 * they compress the way real source does (well, but not to nothing like one repeated byte).
 */
export function sourceLikeBytes(sizeBytes: number, seed = 0): Uint8Array {
  const parts: string[] = [];
  let total = 0;
  for (let i = 0; total < sizeBytes; i++) {
    const line = `  const value${i} = compute(options.flag${i % 31}, ${(i * 7919 + seed) % 997}, "${seed}"); // step ${i % 13}\n`;
    parts.push(line);
    total += line.length;
  }
  return new Uint8Array(Buffer.from(parts.join('')).subarray(0, sizeBytes));
}
