import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where ../shared/k8s keeps its binaries, PKI and kubeconfig (see ../shared/k8s/README.md). */
export const k8sHome =
  process.env['KMM_K8S_HOME'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'kmm-k8s');
const sharedK8s = resolve(import.meta.dirname, '../../../shared/k8s');

export interface TestCluster {
  /** Admin kubeconfig (client certificate in system:masters). */
  readonly kubeconfig: string;
  /** Runs kubectl against the cluster; rejects with kubectl's stderr on a non-zero exit. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
}

/**
 * Starts the loopback control plane if it is not running (up.sh is idempotent and takes ~10 s once built) and
 * returns a handle. Suites share one cluster and isolate themselves by namespace and resource names.
 */
export async function ensureCluster(): Promise<TestCluster> {
  if (!existsSync(join(sharedK8s, 'up.sh'))) {
    throw new Error(`the e2e suites need ../shared/k8s (looked in ${sharedK8s})`);
  }
  const shared = join(k8sHome, 'kubeconfig');
  // up.sh rewrites the shared kubeconfig each time it runs, under the feet of processes reading it: run it only
  // when the API server does not answer, and hand each caller a private copy.
  if (!(await isReady(shared))) {
    await run('bash', [join(sharedK8s, 'up.sh')], { timeout: 20 * 60_000, maxBuffer: 16 << 20 });
  }
  const dir = await mkdtemp(join(tmpdir(), 'kmm-kubeconfig-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await copyFile(shared, kubeconfig);
  return {
    kubeconfig,
    kubectl: (args, input) => kubectl(kubeconfig, args, input),
  };
}

async function isReady(kubeconfig: string): Promise<boolean> {
  if (!existsSync(kubeconfig)) return false;
  try {
    return (await kubectl(kubeconfig, ['get', '--raw', '/readyz', '--request-timeout=5s'])).trim() === 'ok';
  } catch {
    return false;
  }
}

/** Stops the control plane (etcd data kept); used by tests of API-server restarts. */
export async function stopCluster(): Promise<void> {
  await run('bash', [join(sharedK8s, 'down.sh')], { timeout: 120_000 });
}

export async function kubectl(kubeconfig: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      'kubectl',
      ['--kubeconfig', kubeconfig, ...args],
      { timeout: 120_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`kubectl ${args.join(' ')}: ${stderr || err.message}`));
        else resolvePromise(stdout);
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}
