import type { Readable } from 'node:stream';

import { expect } from 'chai';

import { ImageError } from '../../src/image/source.ts';

/** Everything `stream` yields, concatenated (a blob or layer read through an image source). */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The ImageError `promise` rejects with; fails the test if it resolves or rejects with anything else. */
export async function rejection(promise: Promise<unknown>): Promise<ImageError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(ImageError);
    return err as ImageError;
  }
  throw new Error('expected a rejection');
}
