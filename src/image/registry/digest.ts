import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

import { ImageError } from '../source.ts';

/** Digest algorithms of image-spec descriptor.md that we can verify, with the length of their hex encoding. */
const ALGORITHMS: Readonly<Record<string, number>> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  readonly algorithm: string;
  readonly hex: string;
}

/** Splits `sha256:<hex>`; anything else (unknown algorithm, wrong length, upper case) is INVALID_MANIFEST. */
export function parseDigest(digest: string, what: string): ParsedDigest {
  const match = /^([a-z0-9]+):([a-f0-9]+)$/.exec(digest);
  const expectedLength = match?.[1] === undefined ? undefined : ALGORITHMS[match[1]];
  if (!match?.[1] || !match[2] || expectedLength !== match[2].length) {
    throw new ImageError(
      'INVALID_MANIFEST',
      `${what}: "${digest}" is not a digest (expected sha256:<64 hex> or sha512:<128 hex>)`,
    );
  }
  return { algorithm: match[1], hex: match[2] };
}

export function isDigest(value: string): boolean {
  const match = /^([a-z0-9]+):([a-f0-9]+)$/.exec(value);
  return match?.[1] !== undefined && ALGORITHMS[match[1]] === match[2]?.length;
}

export function computeDigest(bytes: Uint8Array, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Throws DIGEST_MISMATCH unless `bytes` (exactly as received) hash to `expected`. */
export function verifyDigest(bytes: Uint8Array, expected: string, what: string): void {
  const { algorithm } = parseDigest(expected, what);
  const actual = computeDigest(bytes, algorithm);
  if (actual !== expected) {
    throw new ImageError('DIGEST_MISMATCH', `${what}: content hashes to ${actual}, expected ${expected}`);
  }
}

/**
 * A pass-through that hashes what flows and fails at the end with DIGEST_MISMATCH if the digest or size is wrong.
 * It fails early, without passing the extra bytes on, once more than `size` bytes arrive, so a lying server cannot
 * feed a consumer an unbounded stream.
 */
export class DigestVerifier extends Transform {
  readonly #expected: string;
  readonly #size: number | undefined;
  readonly #what: string;
  readonly #hash: Hash;
  #received = 0;

  constructor(expected: string, size: number | undefined, what: string) {
    super();
    this.#hash = createHash(parseDigest(expected, what).algorithm);
    this.#expected = expected;
    this.#size = size;
    this.#what = what;
  }

  /** Bytes seen so far. */
  get received(): number {
    return this.#received;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#received += chunk.length;
    if (this.#size !== undefined && this.#received > this.#size) {
      callback(
        new ImageError(
          'DIGEST_MISMATCH',
          `${this.#what}: more than the ${this.#size} bytes its descriptor declares (${this.#expected})`,
        ),
      );
      return;
    }
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#size !== undefined && this.#received !== this.#size) {
      callback(
        new ImageError(
          'DIGEST_MISMATCH',
          `${this.#what}: ${this.#received} bytes, its descriptor declares ${this.#size} (${this.#expected})`,
        ),
      );
      return;
    }
    const actual = `${parseDigest(this.#expected, this.#what).algorithm}:${this.#hash.digest('hex')}`;
    callback(
      actual === this.#expected
        ? null
        : new ImageError(
            'DIGEST_MISMATCH',
            `${this.#what}: content hashes to ${actual}, expected ${this.#expected}`,
          ),
    );
  }
}
