import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { CodedError } from '../src/platform/errors.ts';

/** A PEM certificate and its PEM (PKCS#1 RSA) private key. */
export interface CertificateAndKey {
  readonly certPem: string;
  readonly keyPem: string;
}

/** What a serving certificate is valid for. At least one DNS name or IP address is required. */
export interface ServingCertificateOptions {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** Validity in days from now (1..3650). */
  readonly days: number;
  /** Subject CN; defaults to the first DNS name, else the first IP (clients verify the SANs, not the CN). */
  readonly commonName?: string;
}

export interface CertificateAuthorityOptions {
  readonly days: number;
  readonly commonName?: string;
}

export type CertificateErrorCode =
  | 'ERR_CERT_NO_SUBJECT'
  | 'ERR_CERT_BAD_DNS_NAME'
  | 'ERR_CERT_BAD_IP'
  | 'ERR_CERT_BAD_DAYS'
  | 'ERR_CERT_BAD_CA';

/** Input that cannot make a certificate; the message names the value and what is expected. */
export class CertificateError extends CodedError<CertificateErrorCode> {}

const RSA_BITS = 2048;
// Certificates start a few minutes in the past so a client whose clock is slightly behind still accepts them.
const CLOCK_SKEW_MS = 5 * 60_000;
const MAX_DAYS = 3650;
// RFC 1123 labels; a leading "*." wildcard label is allowed, as x509 SANs permit.
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Makes a self-signed CA (basicConstraints cA, keyCertSign) to sign serving certificates with. */
export async function createCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAndKey> {
  checkDays(options.days);
  const keys = await generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  setValidity(cert, options.days);
  const subject = [{ name: 'commonName', value: options.commonName ?? 'kmm-preflight webhook CA' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

/**
 * Issues a TLS server certificate signed by `ca`, with every DNS name and IP address as a SAN (the API server
 * ignores the CN) and the serverAuth extended key usage.
 */
export async function issueServingCertificate(
  ca: CertificateAndKey,
  options: ServingCertificateOptions,
): Promise<CertificateAndKey> {
  checkDays(options.days);
  const dnsNames = options.dnsNames.map(normalizeDnsName);
  const ipAddresses = options.ipAddresses.map(checkIpAddress);
  const commonName = options.commonName ?? dnsNames[0] ?? ipAddresses[0];
  if (commonName === undefined) {
    throw new CertificateError(
      'ERR_CERT_NO_SUBJECT',
      'a serving certificate needs at least one DNS name or IP address (e.g. --dns webhook.ns.svc or --ip 127.0.0.1)',
    );
  }
  const caCert = parseCaCertificate(ca);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = await generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  setValidity(cert, options.days);
  cert.setSubject([{ name: 'commonName', value: commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        ...dnsNames.map((value) => ({ type: 2, value })),
        ...ipAddresses.map((ip) => ({ type: 7, ip })),
      ],
    },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

function parseCaCertificate(ca: CertificateAndKey): forge.pki.Certificate {
  let caCert: forge.pki.Certificate;
  try {
    caCert = forge.pki.certificateFromPem(ca.certPem);
  } catch (err) {
    throw new CertificateError(
      'ERR_CERT_BAD_CA',
      `the CA certificate is not a PEM RSA certificate: ${String(err)}`,
    );
  }
  const constraints = caCert.getExtension('basicConstraints') as { cA?: boolean } | null;
  if (constraints?.cA !== true) {
    throw new CertificateError(
      'ERR_CERT_BAD_CA',
      'the CA certificate lacks basicConstraints cA=true: it cannot sign',
    );
  }
  return caCert;
}

async function generateRsaKeyPair(): Promise<forge.pki.rsa.KeyPair> {
  // With a callback and no custom PRNG, node-forge delegates to Node's native (off-thread) key generation.
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits: RSA_BITS, e: 0x10001 }, (err, keypair) => {
      if (err) reject(err);
      else resolve(keypair);
    });
  });
}

function setValidity(cert: forge.pki.Certificate, days: number): void {
  const now = Date.now();
  // A positive 128-bit serial: RFC 5280 requires positive serials of at most 20 octets.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now + days * 86_400_000);
}

function checkDays(days: number): void {
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new CertificateError(
      'ERR_CERT_BAD_DAYS',
      `days must be a whole number from 1 to ${MAX_DAYS}, got ${days}`,
    );
  }
}

function normalizeDnsName(name: string): string {
  const lower = name.toLowerCase();
  const labels = lower.startsWith('*.') ? lower.slice(2).split('.') : lower.split('.');
  if (lower.length > 253 || labels.some((label) => !DNS_LABEL.test(label))) {
    throw new CertificateError(
      'ERR_CERT_BAD_DNS_NAME',
      `"${name}" is not a DNS name (RFC 1123 labels such as webhook.my-namespace.svc)`,
    );
  }
  return lower;
}

function checkIpAddress(ip: string): string {
  if (isIP(ip) === 0) {
    throw new CertificateError('ERR_CERT_BAD_IP', `"${ip}" is not an IPv4 or IPv6 address`);
  }
  return ip;
}
