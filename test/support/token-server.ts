import { createSign, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { selfSignedCertificate } from './openssl.ts';

/**
 * A Docker registry token service (the flow of the distribution "token" auth): it checks the Basic credentials a
 * client sends, and answers with a short-lived JWT, signed with a key whose self-signed certificate the registry
 * trusts (`rootcertbundle`), granting the scopes asked for. Serves HTTPS on 127.0.0.1 with the given key pair.
 */

export const TOKEN_SERVICE = 'kmm-test-registry';
export const TOKEN_ISSUER = 'kmm-test-token-issuer';

export interface TokenServer {
  /** `https://127.0.0.1:<port>/token`, the realm the registry names in its challenge. */
  readonly realm: string;
  /** The certificate the registry verifies tokens with (its `rootcertbundle`). */
  readonly signerCertFile: string;
  /** Every token handed out so far. */
  readonly issued: readonly string[];
  close(): Promise<void>;
}

export interface TokenServerOptions {
  /** Directory for the signing key and certificate. */
  readonly dir: string;
  readonly tls: { readonly certFile: string; readonly keyFile: string };
  readonly username: string;
  readonly password: string;
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const signerKeyFile = join(options.dir, 'token-signer-key.pem');
  const signerCertFile = join(options.dir, 'token-signer.crt');
  await selfSignedCertificate('/CN=kmm-preflight test token signer', signerKeyFile, signerCertFile);
  const signerKey = await readFile(signerKeyFile, 'utf8');
  // The certificate goes in the token's x5c header, DER in standard base64: the registry checks it against its
  // rootcertbundle and the signature against its key.
  const x5c = (await readFile(signerCertFile, 'utf8')).replace(/-----[^-]+-----|\s/g, '');
  const expected = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
  const issued: string[] = [];
  const server = createServer(
    { cert: await readFile(options.tls.certFile), key: await readFile(options.tls.keyFile) },
    (req, res) => {
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      if (url.pathname !== '/token') {
        res.writeHead(404).end();
        return;
      }
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      const token = signToken(signerKey, x5c, options.username, url.searchParams.getAll('scope'));
      issued.push(token);
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          token,
          access_token: token,
          expires_in: 300,
          issued_at: new Date().toISOString(),
        }),
      );
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the token server has no address');
  return {
    realm: `https://127.0.0.1:${address.port}/token`,
    signerCertFile,
    issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A JWT granting every action asked for in `scopes` (`repository:<name>:<actions>`). */
function signToken(key: string, x5c: string, subject: string, scopes: readonly string[]): string {
  const now = Math.floor(Date.now() / 1000);
  const access = scopes.map((scope) => {
    const parts = scope.split(':');
    return {
      type: parts[0] ?? '',
      name: parts.slice(1, -1).join(':'),
      actions: (parts.at(-1) ?? '').split(',').filter((a) => a !== ''),
    };
  });
  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode({ typ: 'JWT', alg: 'RS256', x5c: [x5c] })}.${encode({
    iss: TOKEN_ISSUER,
    sub: subject,
    aud: TOKEN_SERVICE,
    exp: now + 300,
    nbf: now - 10,
    iat: now,
    jti: randomBytes(8).toString('hex'),
    access,
  })}`;
  return `${input}.${createSign('RSA-SHA256').update(input).sign(key).toString('base64url')}`;
}
