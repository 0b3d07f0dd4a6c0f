import { expect } from 'chai';

import { ReleaseError } from '../../src/release/errors.ts';

/** Asserts that `fn` throws a ReleaseError with `code` and a message matching `message`. */
export function expectReleaseError(fn: () => unknown, code: string, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ReleaseError);
    expect((err as ReleaseError).code).to.equal(code);
    expect((err as ReleaseError).message).to.match(message);
    return;
  }
  expect.fail(`expected ReleaseError ${code}`);
}
