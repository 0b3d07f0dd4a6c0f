import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const TRACE_PREFIX = 'loaded packages: ';

/** The npm packages `kmm-preflight <args>` loads (whatever its exit code), read from the trace-packages preload. */
function packagesLoadedBy(args: readonly string[]): Promise<string[]> {
  const preload = resolve(root, 'test/support/trace-packages.ts');
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      ['--import', preload, resolve(root, 'bin/kmm-preflight.js'), ...args],
      (_, __, stderr) => {
        const line = stderr.split('\n').find((l) => l.startsWith(TRACE_PREFIX));
        if (line === undefined)
          fail(new Error(`kmm-preflight ${args.join(' ')}: no package trace in: ${stderr}`));
        else done(line.slice(TRACE_PREFIX.length).split(' '));
      },
    );
  });
}

describe('cli: what each command loads', () => {
  // The Kubernetes client alone is ~90 MiB of RSS and most of a second of start-up: the offline commands, which a
  // pipeline runs many times, must not pay for the runner and the webhook.
  it('loads neither the Kubernetes client nor express for the offline commands and --help', async () => {
    for (const args of [
      ['--help'],
      ['image', '--help'],
      ['check', '--help'],
      ['release', '--help'],
      ['certs', '--help'],
    ]) {
      const packages = await packagesLoadedBy(args);
      expect(packages, args.join(' ')).to.include('commander');
      expect(packages, args.join(' ')).to.not.include('@kubernetes/client-node');
      expect(packages, args.join(' ')).to.not.include('express');
    }
  });

  it('loads the Kubernetes client once the runner or the webhook runs', async () => {
    // A kubeconfig that does not exist stops each command right after it has loaded its implementation.
    const missing = ['--kubeconfig', '/nonexistent/kubeconfig'];
    const runner = await packagesLoadedBy(['runner', ...missing]);
    expect(runner).to.include('@kubernetes/client-node');
    const webhook = await packagesLoadedBy([
      'webhook',
      ...missing,
      '--tls-cert-file',
      '/x',
      '--tls-key-file',
      '/x',
    ]);
    expect(webhook).to.include.members(['@kubernetes/client-node', 'express']);
  });
});
