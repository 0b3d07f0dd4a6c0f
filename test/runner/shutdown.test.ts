import { expect } from 'chai';
import { createLogger } from '../../src/platform/logger.ts';
import { shutDown, type ShutdownSteps } from '../../src/runner/shutdown.ts';

const logger = createLogger({ level: 'silent' });
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const after = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A step that records that it ran. */
const recorded = (order: string[], name: string) => (): Promise<void> => {
  order.push(name);
  return Promise.resolve();
};

describe('runner: the bounded stop sequence', () => {
  it('drains, writes the last results, waits for the election loop, releases the Lease, then closes', async () => {
    const order: string[] = [];
    const steps: ShutdownSteps = {
      drain: async () => {
        await after(20);
        order.push('drain');
      },
      flush: () => {
        order.push('flush');
        return Promise.resolve(3);
      },
      election: after(40).then(() => {
        order.push('election');
      }),
      release: recorded(order, 'release'),
      close: recorded(order, 'close'),
    };
    const report = await shutDown(steps, 5_000, logger);
    expect(order).to.deep.equal(['drain', 'flush', 'election', 'release', 'close']);
    expect(report).to.deep.equal({ flushed: 3, cutShort: [] });
  });

  it('finishes within the bound when the API server answers nothing (every step hangs but close)', async () => {
    const order: string[] = [];
    const started = Date.now();
    const report = await shutDown(
      {
        drain: never,
        flush: never,
        election: never(),
        release: never,
        close: recorded(order, 'close'),
      },
      400,
      logger,
    );
    const elapsed = Date.now() - started;
    expect(elapsed).to.be.within(390, 1_000);
    expect(order, 'what still runs is aborted').to.deep.equal(['close']);
    expect(report).to.deep.equal({ flushed: 0, cutShort: ['flush', 'lease'] });
  });

  it('a flush that hangs leaves the Lease release its reserve of the budget', async () => {
    let released = false;
    const started = Date.now();
    const report = await shutDown(
      {
        drain: () => Promise.resolve(),
        flush: never,
        election: Promise.resolve(),
        release: async () => {
          await after(30);
          released = true;
        },
        close: () => Promise.resolve(),
      },
      400,
      logger,
    );
    expect(released).to.equal(true);
    expect(report.cutShort).to.deep.equal(['flush']);
    expect(Date.now() - started).to.be.below(1_000);
  });

  it('a failing step does not stop the sequence, and nothing is flushed after a lost leadership', async () => {
    const order: string[] = [];
    const report = await shutDown(
      {
        drain: () => Promise.reject(new Error('a reconcile failed')),
        election: Promise.reject(new Error('the election loop failed')),
        close: recorded(order, 'close'),
      },
      1_000,
      logger,
    );
    expect(order).to.deep.equal(['close']);
    expect(report).to.deep.equal({ flushed: 0, cutShort: [] });
  });
});
