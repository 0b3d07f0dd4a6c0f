import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ensureCluster, kubectl, type TestCluster } from '../support/cluster.ts';

/**
 * Helpers of the runner's e2e suites and benchmark: the runner started as users start it, a separate
 * `kmm-preflight runner` process whose JSON log lines are kept.
 */

const repoRoot = resolve(import.meta.dirname, '../..');
const node = join(repoRoot, 'node_modules/.bin/node');

/**
 * ensureCluster(), with the admin kubeconfig copied to `dir`: up.sh rewrites the shared file whenever any suite
 * starts the cluster, and a runner or kubectl reading it at that moment finds it missing.
 */
export async function privateCluster(dir: string): Promise<TestCluster> {
  const shared = await ensureCluster();
  const kubeconfig = join(dir, 'kubeconfig');
  await copyFile(shared.kubeconfig, kubeconfig);
  return { kubeconfig, kubectl: (args, input) => kubectl(kubeconfig, args, input) };
}

export interface LogLine {
  readonly level?: string;
  readonly msg?: string;
  readonly [key: string]: unknown;
}

export interface RunnerProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[];
  /** Raw stdout/stderr text that was not JSON (should stay empty). */
  readonly other: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** host:port of the ops server, once it logged it. */
  opsAddress(): Promise<string>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function startRunnerProcess(args: readonly string[], env: NodeJS.ProcessEnv = {}): RunnerProcess {
  const child = spawn(node, [join(repoRoot, 'bin/kmm-preflight.js'), 'runner', ...args], {
    cwd: repoRoot,
    env: { ...process.env, KMM_PREFLIGHT_CLUSTER_MIRRORS: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const other: string[] = [];
  const listeners = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (text) => {
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        other.push(text);
      }
      for (const listener of listeners) listener();
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once('exit', (code, signal) => resolveExit({ code, signal })),
  );
  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 60_000): Promise<LogLine> =>
    new Promise((resolveLine, reject) => {
      const check = (): void => {
        const found = lines.find(predicate);
        if (found === undefined) return;
        clearTimeout(timer);
        listeners.delete(check);
        resolveLine(found);
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`runner log line not seen in ${timeoutMs} ms; last lines:\n${tail(lines, other)}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  return {
    child,
    lines,
    other,
    exited,
    opsAddress: async () => String((await waitForLog((l) => typeof l['ops'] === 'string'))['ops']),
    waitForLog,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

function tail(lines: readonly LogLine[], other: readonly string[]): string {
  return [...lines.slice(-15).map((l) => JSON.stringify(l)), ...other.slice(-5)].join('\n');
}
