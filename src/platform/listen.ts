import type { Server } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface ListeningAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Starts `server` listening and resolves with the bound address (port 0 picks a free one), or rejects with the
 * bind error (EADDRINUSE, EACCES) instead of leaving it to the server's 'error' event.
 */
export async function listenOn(server: Server, port: number, host: string): Promise<ListeningAddress> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return { host: address.address, port: address.port };
}
