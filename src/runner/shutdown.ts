import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

/**
 * The runner's stop sequence (SIGTERM, or leadership lost), bounded as a whole so the pod exits inside its
 * termination grace period even when the API server does not answer (each request may otherwise wait its 30 s
 * timeout). The work queue has already stopped handing out keys and no validation starts any more.
 *
 * 1. the reconciles in progress finish, then the results not yet written are written, one write per resource;
 * 2. the leader-election loop ends and the Lease is released, so a standby takes over at once;
 * 3. everything still running is aborted and closed.
 *
 * Steps 1 and 2 share `timeoutMs`; step 2 keeps a reserve of it, so a slow flush cannot cost the Lease release.
 */

export interface ShutdownSteps {
  /** Resolves when the reconciles in progress have finished. */
  readonly drain: () => Promise<void>;
  /** Writes the results not written yet (none after a lost leadership: another replica may be writing). */
  readonly flush?: () => Promise<number>;
  /** Ends when the leader-election loop has stopped (after its current Lease round). */
  readonly election: Promise<void>;
  /** Gives the Lease up (none without leader election, or after a lost leadership). */
  readonly release?: () => Promise<void>;
  /** Aborts the API requests still running and stops watches, timers and the ops server; must not hang. */
  readonly close: () => Promise<void>;
}

/** What the Lease release may keep of the budget when the flush takes long. */
const LEASE_RESERVE_MS = 2_000;

export interface ShutdownReport {
  /** Resources whose last results were written. */
  readonly flushed: number;
  /** Steps cut short by the bound. */
  readonly cutShort: readonly ('flush' | 'lease')[];
}

export async function shutDown(
  steps: ShutdownSteps,
  timeoutMs: number,
  logger: Logger,
): Promise<ShutdownReport> {
  const startedMs = Date.now();
  const reserveMs = Math.min(LEASE_RESERVE_MS, timeoutMs / 4);
  const left = (untilMs: number): number => Math.max(0, startedMs + untilMs - Date.now());
  const cutShort: ('flush' | 'lease')[] = [];
  let flushed = 0;

  const work = await within(
    left(timeoutMs - reserveMs),
    (async () => {
      await steps.drain();
      if (steps.flush !== undefined) flushed = await steps.flush();
    })(),
  );
  if (work === 'timeout') {
    cutShort.push('flush');
    logger.warn({ timeoutMs }, 'shutdown: abandoning reconciles and status writes still running');
  }

  const lease = await within(
    left(timeoutMs),
    (async () => {
      await steps.election;
      await steps.release?.();
    })(),
  );
  if (lease === 'timeout') {
    cutShort.push('lease');
    logger.warn({ timeoutMs }, 'shutdown: the Lease could not be released in time; it expires by itself');
  }

  await steps.close();
  return { flushed, cutShort };
}

/** Waits for `work` at most `ms`; a rejection counts as finished (each step logs its own failures). */
async function within(ms: number, work: Promise<void>): Promise<'done' | 'timeout'> {
  const timer = new AbortController();
  const settled = work.then(
    () => 'done' as const,
    () => 'done' as const,
  );
  // Aborted once the work is done; the rejection that follows is expected.
  const timeout = sleep(ms, 'timeout' as const, { signal: timer.signal }).catch(() => 'timeout' as const);
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    timer.abort();
  }
}
