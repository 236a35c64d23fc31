/**
 * Archives built in memory for the Remote Asset FetchDirectory tests: tar (through tar-stream's
 * packer), gzip of it, and a minimal zip writer that, unlike the `zip` tool, writes whatever names
 * and modes it is given (so hostile archives can be made on purpose).
 */
import { deflateRawSync, crc32, gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export interface ArchiveEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: Buffer | string;
  /** Unix permission bits. @default 0o644 (files), 0o755 (directories) */
  mode?: number;
  /** Symlink target or hard link source. */
  linkname?: string;
}

export async function makeTar(entries: readonly ArchiveEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const done = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk);
    return Buffer.concat(chunks);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const mode = e.mode ?? (type === 'directory' ? 0o755 : 0o644);
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name: e.name, type, mode, linkname: e.linkname, mtime: new Date(0) }, type === 'file' ? Buffer.from(e.content ?? '') : undefined, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  pack.finalize();
  return done;
}

export async function makeTarGz(entries: readonly ArchiveEntry[]): Promise<Buffer> {
  return gzipSync(await makeTar(entries));
}

/** A zip with Unix modes in the external attributes (symlinks: S_IFLNK with the target as content). */
export function makeZip(entries: readonly ArchiveEntry[], opts: { deflate?: boolean } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const type = e.type ?? 'file';
    const name = Buffer.from(type === 'directory' && !e.name.endsWith('/') ? `${e.name}/` : e.name, 'utf8');
    const data = Buffer.from(type === 'symlink' ? (e.linkname ?? '') : (e.content ?? ''));
    const method = opts.deflate && type === 'file' ? 8 : 0;
    const stored = method === 8 ? deflateRawSync(data) : data;
    const typeBits = type === 'directory' ? 0o040000 : type === 'symlink' ? 0o120000 : 0o100000;
    const mode = typeBits | (e.mode ?? (type === 'directory' ? 0o755 : 0o644));
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, stored);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(mode * 0x10000, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + stored.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}
