import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs openssl with `args`; rejects with its stderr on failure. */
export function openssl(args: readonly string[]): Promise<unknown> {
  return run('openssl', [...args], { timeout: 60_000 });
}

/** A new RSA key (`keyFile`) and a self-signed certificate for it (`certFile`), valid two days. */
export function selfSignedCertificate(subject: string, keyFile: string, certFile: string): Promise<unknown> {
  return openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    subject,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
}
