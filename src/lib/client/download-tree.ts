/**
 * Recreates a remote Directory tree locally: one GetTree call fetches every Directory, then files
 * are downloaded in batches (small) or streamed (large), all names and symlinks validated by
 * `materializeTree` before anything is written.
 */
import { type MaterializeResult, materializeTree } from '../cas/merkle.js';
import { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import { encodeCanonical } from '../proto/canonical.js';
import { reapi } from '../proto/index.js';
import type { CasClient } from './cas-client.js';
import type { RemoteCallOptions } from './connection.js';

export async function downloadTree(cas: CasClient, rootDigest: Digest, destDir: string, opts: RemoteCallOptions = {}): Promise<MaterializeResult> {
  // GetTree does not say which digest each Directory has: re-encode canonically to find out. A
  // Directory stored non-canonically misses here and is fetched by digest instead.
  const byKey = new Map<string, reapi.IDirectory>();
  for (const dir of await cas.getTree(rootDigest, opts)) {
    const d = Digest.ofBytes(encodeCanonical(reapi.Directory, dir), { instanceName: rootDigest.instanceName, digestFunction: rootDigest.digestFunction });
    byKey.set(d.key, dir);
  }
  return materializeTree(
    {
      getDirectory: async (digest) => {
        const known = byKey.get(digest.key);
        if (known) return known;
        const bytes = await cas.readBlob(digest, opts);
        try {
          return reapi.Directory.decode(bytes);
        } catch (err) {
          throw StatusError.invalidArgument(`Blob ${digest} is not a Directory: ${err instanceof Error ? err.message : String(err)}`);
        }
      },
      downloadFile: (digest, path, isExecutable) => cas.downloadToFile(digest, path, { ...opts, isExecutable }),
      downloadFiles: (items) => cas.downloadToFiles(items, opts),
    },
    rootDigest,
    destDir,
  );
}
