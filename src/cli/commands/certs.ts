import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { CertificateError } from '../../../certs/certificates.ts';
import { writeServingCertificates } from '../../../certs/files.ts';
import { UsageError } from '../io.ts';
import type { CommandRegistration } from '../commands.ts';

interface CertsFlags {
  out: string;
  dns: string[];
  ip: string[];
  days: number;
  caDir?: string;
}

/** `kmm-preflight certs`: a CA and a serving certificate for the webhook, for clusters without cert-manager. */
export const registerCertsCommand: CommandRegistration = (program, io, setExitCode) => {
  program
    .command('certs')
    .description(
      'Make a CA and a webhook serving certificate (ca.crt, tls.crt, tls.key) for local runs, tests and clusters without cert-manager.',
    )
    .requiredOption('--out <dir>', 'directory for ca.crt, tls.crt and tls.key (created if missing)')
    .option(
      '--dns <name>',
      'DNS name for the certificate, e.g. webhook.kmm-preflight.svc (repeatable)',
      collect,
      [],
    )
    .option('--ip <address>', 'IP address for the certificate, e.g. 127.0.0.1 (repeatable)', collect, [])
    .option('--days <n>', 'validity in days', parseDays, 365)
    .option(
      '--ca-dir <dir>',
      'keep the CA (ca.crt, ca.key) here and reuse it next time, so a renewed certificate needs no new caBundle',
    )
    .action(async (flags: CertsFlags) => {
      let written;
      try {
        written = await writeServingCertificates({
          outDir: flags.out,
          dnsNames: flags.dns,
          ipAddresses: flags.ip,
          days: flags.days,
          ...(flags.caDir === undefined ? {} : { caDir: flags.caDir }),
        });
      } catch (err) {
        if (err instanceof CertificateError) throw new UsageError(err.message);
        const { code, path } = err as NodeJS.ErrnoException;
        if (code !== undefined && path !== undefined) {
          // A directory that cannot be created or written: say which flag named it.
          const flag = flags.caDir !== undefined && isWithin(path, flags.caDir) ? '--ca-dir' : '--out';
          throw new UsageError(`${flag}: cannot write ${path} (${code}); give a directory you can write to`);
        }
        throw err;
      }
      const cert = new X509Certificate(await readFile(written.certFile));
      io.stdout.write(
        [
          `wrote ${written.caCertFile}, ${written.certFile}, ${written.keyFile} (key mode 0600)`,
          `subjectAltName: ${cert.subjectAltName ?? ''}`,
          `valid until: ${new Date(cert.validTo).toISOString()}`,
          `sha256 fingerprint: ${cert.fingerprint256}`,
          ...(written.caKeyFile === undefined ? [] : [`CA key kept in ${written.caKeyFile}`]),
          '',
        ].join('\n'),
      );
      setExitCode(0);
    });
};

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseDays(value: string): number {
  const days = Number(value);
  if (!/^\d+$/.test(value) || days < 1)
    throw new UsageError(`--days: "${value}" is not a whole number of days`);
  return days;
}

/** Whether `path` is `dir` or below it, however each is spelled (`./ca` and `ca/ca.key`, not `ca-other`). */
function isWithin(path: string, dir: string): boolean {
  const fromDir = relative(dir, path);
  return fromDir === '' || (!fromDir.startsWith('..') && !fromDir.startsWith('/'));
}
