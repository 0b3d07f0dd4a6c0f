import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { ProgressLine, renderProgressLine } from '../../src/check/progress.ts';
import type { CheckProgress } from '../../src/check/run.ts';

const progress: CheckProgress = {
  done: 3,
  total: 40,
  inFlight: [
    { module: 'drivers/ice', image: 'quay.io/acme/ice:5.14.0-427.el9.x86_64' },
    { module: 'drivers/gpu' },
  ],
};

describe('check: progress display', () => {
  it('shows done/total and each Module in flight with the image it checks', () => {
    expect(renderProgressLine(progress, 200)).to.equal(
      'validating 3/40 modules: drivers/ice quay.io/acme/ice:5.14.0-427.el9.x86_64, drivers/gpu',
    );
    expect(renderProgressLine({ done: 40, total: 40, inFlight: [] }, 200)).to.equal(
      'validating 40/40 modules',
    );
  });

  it('fits the terminal, one column short, and takes 80 columns when the terminal reports 0 or none', () => {
    const narrow = renderProgressLine(progress, 30);
    expect(narrow).to.have.length(29);
    expect(narrow.endsWith('…')).to.equal(true);
    for (const columns of [0, undefined]) {
      const line = renderProgressLine(progress, columns);
      expect(line).to.have.length(79);
      expect(line.startsWith('validating 3/40 modules: drivers/ice quay.io/acme/ice:')).to.equal(true);
    }
  });

  function capture(isTTY: boolean): {
    stream: PassThrough & { isTTY?: boolean; columns?: number };
    text: () => string;
  } {
    const stream = Object.assign(new PassThrough(), { isTTY, columns: 120 });
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    return { stream, text: () => Buffer.concat(chunks).toString() };
  }

  it('writes nothing when the stream is not a terminal', async () => {
    const { stream, text } = capture(false);
    const line = new ProgressLine(stream);
    line.update(progress);
    line.clear();
    await new Promise((resolve) => setImmediate(resolve));
    expect(text()).to.equal('');
  });

  it('on a terminal rewrites one line and clears it at the end', async () => {
    const { stream, text } = capture(true);
    const line = new ProgressLine(stream);
    line.update(progress);
    line.clear();
    await new Promise((resolve) => setImmediate(resolve));
    expect(text()).to.equal(`\r\u001b[2K${renderProgressLine(progress, 120)}\r\u001b[2K`);
  });
});
