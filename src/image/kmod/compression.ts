import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { xz } from '@napi-rs/lzma';

import { canonicalModuleName } from '../../kernel/module-file.ts';
import { ImageError } from '../source.ts';
import { KmodError } from './errors.ts';

/**
 * Compressed modules as libkmod knows them (`.ko.gz`, `.ko.xz`, `.ko.zst`): decompressed here only to inspect them,
 * with the output bounded so a small hostile file cannot inflate without limit. xz comes from @napi-rs/lzma (Node's
 * zlib has gzip and zstd but no xz, and RHEL ships its modules as .ko.xz).
 */

export type ModuleCompression = 'none' | 'gzip' | 'xz' | 'zstd';

const EXTENSIONS: readonly (readonly [string, ModuleCompression])[] = [
  ['.ko', 'none'],
  ['.ko.gz', 'gzip'],
  ['.ko.xz', 'xz'],
  ['.ko.zst', 'zstd'],
];

const MAGIC: Readonly<Record<Exclude<ModuleCompression, 'none'>, Buffer>> = {
  gzip: Buffer.from([0x1f, 0x8b]),
  xz: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
  zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
};

/** The compression a module file name implies, or undefined if the name is not a module file name. */
export function moduleCompressionOf(fileName: string): ModuleCompression | undefined {
  for (const [ext, compression] of EXTENSIONS) if (fileName.endsWith(ext)) return compression;
  return undefined;
}

/** The module name a file name stands for (`nvme-core.ko.xz` → `nvme_core`), or undefined if not a module file. */
export function moduleNameOfFile(fileName: string): string | undefined {
  const base = fileName.slice(fileName.lastIndexOf('/') + 1);
  for (const [ext] of EXTENSIONS) {
    if (base.endsWith(ext) && base.length > ext.length)
      return canonicalModuleName(base.slice(0, -ext.length));
  }
  return undefined;
}

/** Returns the uncompressed module; the file name's extension must agree with the content's magic bytes. */
export async function decompressModule(fileName: string, bytes: Buffer, maxBytes: number): Promise<Buffer> {
  const compression = moduleCompressionOf(fileName) ?? 'none';
  if (compression === 'none') return bytes;
  if (!bytes.subarray(0, MAGIC[compression].length).equals(MAGIC[compression])) {
    throw new KmodError(
      'BAD_COMPRESSION',
      `${fileName} is named as ${compression} but does not start with ${compression} magic bytes`,
    );
  }
  const tooBig = (): ImageError =>
    new ImageError(
      'LIMIT_EXCEEDED',
      `${fileName} decompresses to more than ${maxBytes} bytes (module size limit)`,
    );
  try {
    if (compression === 'gzip') return gunzipSync(bytes, { maxOutputLength: maxBytes });
    if (compression === 'zstd') return zstdDecompressSync(bytes, { maxOutputLength: maxBytes });
    const declared = xzUncompressedSize(bytes);
    if (declared > maxBytes) throw tooBig();
    const out = await xz.decompress(bytes);
    if (out.length > maxBytes) throw tooBig();
    return out;
  } catch (err) {
    if (err instanceof ImageError) throw err;
    if (err instanceof RangeError || (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw tooBig();
    throw new KmodError(
      'BAD_COMPRESSION',
      `${fileName}: ${compression} data is corrupt: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Sums the uncompressed sizes an xz file's index declares (xz file format 1.0.4, sections 2.1.2 and 4), so the
 * size limit is enforced before decompressing. Only single-stream files are accepted, as `xz` writes for modules.
 */
function xzUncompressedSize(bytes: Buffer): number {
  const footerStart = bytes.length - 12;
  if (footerStart < 12 || bytes.toString('latin1', bytes.length - 2) !== 'YZ') {
    throw new KmodError('BAD_COMPRESSION', 'xz stream footer missing (truncated file?)');
  }
  const indexSize = (bytes.readUInt32LE(footerStart + 4) + 1) * 4;
  const indexStart = footerStart - indexSize;
  if (indexStart < 12 || bytes[indexStart] !== 0)
    throw new KmodError('BAD_COMPRESSION', 'xz index missing or corrupt');
  let at = indexStart + 1;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 63; shift += 7) {
      const byte = bytes[at++];
      if (byte === undefined || at > footerStart)
        throw new KmodError('BAD_COMPRESSION', 'xz index truncated');
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new KmodError('BAD_COMPRESSION', 'xz index number too long');
  };
  const records = varint();
  let total = 0;
  for (let i = 0; i < records; i++) {
    varint(); // unpadded size
    total += varint();
  }
  return total;
}
