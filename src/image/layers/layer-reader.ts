import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { extract as createExtract } from 'tar-stream';

import {
  ImageError,
  type Descriptor,
  type ImageSource,
  type PullOptions,
  type ResolvedImage,
} from '../source.ts';
import type { LayerLimits } from './limits.ts';
import { baseNameOf, joinPath, normalizeImagePath, parentOf } from './paths.ts';
import { errorMessage } from '../../platform/errors.ts';

export type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface LayerEntry {
  readonly path: string;
  readonly kind: EntryKind;
  readonly size: number;
  /** Symlinks: the target as written in the tar. Hard links: the normalised path of the linked file. */
  readonly linkTarget?: string;
}

/**
 * What reading one layer taught us; immutable once built, so it can be cached by layer digest and shared between
 * walks. A layer's own entries are listed as the tar left them (a later entry for a path replaces an earlier one).
 */
export interface LayerRecord {
  readonly digest: string;
  readonly entries: ReadonlyMap<string, LayerEntry>;
  /** Paths a `.wh.<name>` deletes (with their subtrees) from lower layers. */
  readonly whiteouts: ReadonlySet<string>;
  /** Directories a `.wh..wh..opq` empties of lower-layer children. */
  readonly opaqueDirs: ReadonlySet<string>;
  /** Content of the regular files the reader was asked to capture. */
  readonly contents: ReadonlyMap<string, Buffer>;
  readonly storedBytes: number;
  readonly tarBytes: number;
}

export interface LayerReadRequest {
  readonly source: ImageSource;
  readonly image: ResolvedImage;
  readonly layer: Descriptor;
  /** Which regular files to keep the content of. */
  readonly capture: (path: string, entry: LayerEntry) => boolean;
  /**
   * Regular files to hand to `onPeek` as they stream by instead of keeping them: the caller keeps what it learns
   * (a module's facts), not the bytes. Asked before `capture`.
   */
  readonly peek?: (path: string, entry: LayerEntry) => boolean;
  readonly onPeek?: (path: string, bytes: Buffer) => Promise<void>;
  readonly limits: LayerLimits;
  readonly pull?: Omit<PullOptions, 'platform'>;
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * Streams one layer blob through decompression (chosen by magic bytes: gzip, zstd or none) into a tar parser and
 * records its entries, whiteouts and the captured files; nothing but captured file content is held in memory.
 */
export async function readLayer(request: LayerReadRequest): Promise<LayerRecord> {
  const { layer, limits } = request;
  if (/encrypted/.test(layer.mediaType)) {
    throw new ImageError(
      'UNSUPPORTED_MEDIA_TYPE',
      `layer ${layer.digest} is encrypted (${layer.mediaType}): cannot look inside it`,
    );
  }
  const blob = await request.source.openBlob(request.image, layer, request.pull ?? {});
  const head = await readHead(blob, ZSTD_MAGIC.length);
  blob.unshift(head);
  const decompress = startsWith(head, GZIP_MAGIC)
    ? createGunzip()
    : startsWith(head, ZSTD_MAGIC)
      ? createZstdDecompress()
      : undefined;

  let storedBytes = 0;
  let tarBytes = 0;
  const countStored = new ByteCounter((n) => {
    storedBytes += n;
  });
  const countTar = new ByteCounter((n) => {
    tarBytes += n;
    if (tarBytes > limits.maxLayerBytes) {
      return limitError(`layer ${layer.digest} holds more than ${limits.maxLayerBytes} uncompressed bytes`);
    }
    if (tarBytes > limits.ratioCheckAfterBytes && tarBytes > storedBytes * limits.maxCompressionRatio) {
      return limitError(
        `layer ${layer.digest} decompresses more than ${limits.maxCompressionRatio} times its stored size (decompression bomb?)`,
      );
    }
    return undefined;
  });
  const extract = createExtract();
  const stages: (Readable | Transform | NodeJS.WritableStream)[] = [blob, countStored];
  if (decompress) stages.push(decompress);
  stages.push(countTar, extract);
  const piping = pipeline(stages as unknown as [Readable, ...Transform[], NodeJS.WritableStream]);
  let pipeError: unknown;
  piping.catch((err: unknown) => {
    pipeError = err;
  });

  const entries = new Map<string, LayerEntry>();
  const whiteouts = new Set<string>();
  const opaqueDirs = new Set<string>();
  const contents = new Map<string, Buffer>();
  let entryCount = 0;
  let capturedBytes = 0;
  try {
    for await (const tarEntry of extract) {
      if (++entryCount > limits.maxEntriesPerLayer) {
        throw limitError(`layer ${layer.digest} has more than ${limits.maxEntriesPerLayer} tar entries`);
      }
      const header = tarEntry.header;
      const path = normalizeImagePath(header.name);
      const name = baseNameOf(path);
      if (path === '') {
        tarEntry.resume();
        continue;
      }
      if (name.startsWith(WHITEOUT_PREFIX)) {
        // Whiteouts act on lower layers only (image-spec layer.md), so they are kept apart from this layer's entries.
        if (name === OPAQUE_MARKER) opaqueDirs.add(parentOf(path));
        else if (!name.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
          whiteouts.add(joinPath(parentOf(path), name.slice(WHITEOUT_PREFIX.length)));
        }
        tarEntry.resume();
        continue;
      }
      const entry = toEntry(path, header);
      entries.set(path, entry);
      contents.delete(path);
      const peek =
        entry.kind === 'file' && request.onPeek !== undefined && (request.peek?.(path, entry) ?? false);
      const keep = !peek && entry.kind === 'file' && request.capture(path, entry);
      if (peek || keep) {
        if (entry.size > limits.maxFileBytes) {
          throw limitError(
            `${path} in layer ${layer.digest} is ${entry.size} bytes, over the ${limits.maxFileBytes}-byte file limit`,
          );
        }
        const bytes = await readAll(tarEntry as unknown as Readable, entry.size);
        if (peek) {
          await request.onPeek?.(path, bytes);
          continue;
        }
        capturedBytes += entry.size;
        if (capturedBytes > limits.maxCapturedBytes) {
          throw limitError(
            `files to inspect in layer ${layer.digest} exceed ${limits.maxCapturedBytes} bytes`,
          );
        }
        contents.set(path, bytes);
      } else {
        tarEntry.resume();
      }
    }
    await piping;
  } catch (err) {
    blob.destroy();
    extract.destroy();
    throw asImageError(pipeError ?? err, layer);
  }
  return { digest: layer.digest, entries, whiteouts, opaqueDirs, contents, storedBytes, tarBytes };
}

function toEntry(
  path: string,
  header: { type?: string | null; size?: number; linkname?: string | null },
): LayerEntry {
  switch (header.type) {
    case 'file':
    case 'contiguous-file':
    case undefined:
    case null:
      return { path, kind: 'file', size: header.size ?? 0 };
    case 'directory':
      return { path, kind: 'directory', size: 0 };
    case 'symlink':
      return { path, kind: 'symlink', size: 0, linkTarget: header.linkname ?? '' };
    case 'link':
      return { path, kind: 'hardlink', size: 0, linkTarget: normalizeImagePath(header.linkname ?? '') };
    default:
      return { path, kind: 'other', size: 0 };
  }
}

class ByteCounter extends Transform {
  readonly #onBytes: (n: number) => Error | undefined;
  constructor(onBytes: (n: number) => Error | undefined) {
    super();
    this.#onBytes = onBytes;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const err = this.#onBytes(chunk.length);
    if (err) callback(err);
    else callback(null, chunk);
  }
}

async function readHead(stream: Readable, size: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < size) {
    const chunk = stream.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      length += chunk.length;
      continue;
    }
    if (stream.readableEnded || stream.destroyed) break;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        stream.off('readable', done);
        stream.off('end', done);
        stream.off('error', fail);
        resolve();
      };
      const fail = (err: Error): void => {
        stream.off('readable', done);
        stream.off('end', done);
        reject(err);
      };
      stream.once('readable', done);
      stream.once('end', done);
      stream.once('error', fail);
    });
    if (stream.errored) throw stream.errored;
  }
  return Buffer.concat(chunks);
}

async function readAll(stream: Readable, size: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    chunk.copy(out, at);
    at += chunk.length;
  }
  return at === size ? out : out.subarray(0, at);
}

function startsWith(bytes: Buffer, magic: Buffer): boolean {
  return bytes.length >= magic.length && bytes.subarray(0, magic.length).equals(magic);
}

function limitError(message: string): ImageError {
  return new ImageError('LIMIT_EXCEEDED', message);
}

function asImageError(err: unknown, layer: Descriptor): ImageError {
  if (err instanceof ImageError) return err;
  const message = errorMessage(err);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ABORT_ERR')
    return new ImageError('TIMEOUT', `reading layer ${layer.digest} was aborted`, { cause: err });
  if (code?.startsWith('Z_') || code?.startsWith('ERR_ZSTD') || /tar|header/i.test(message)) {
    return new ImageError(
      'UNSUPPORTED_MEDIA_TYPE',
      `layer ${layer.digest} (${layer.mediaType}) is not a readable gzip, zstd or plain tar: ${message}`,
      {
        cause: err,
      },
    );
  }
  return new ImageError('UNREACHABLE', `reading layer ${layer.digest} failed: ${message}`, { cause: err });
}
