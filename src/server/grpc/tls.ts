/**
 * TLS for bzutil's gRPC ports: a certificate and key, optionally a client CA (mTLS: a client without
 * a certificate signed by it is refused during the handshake). The files are read at start and again
 * on `reload()` (the serve commands call it on SIGHUP), so a renewed certificate is served to new
 * connections without a restart; a reload that cannot read the files keeps the previous ones.
 *
 * grpc-js reloads credentials through certificate providers; ReloadableCertificateProvider is one
 * fed from files on demand, where grpc-js's FileWatcherCertificateProvider polls on a timer.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../lib/util/logger.js';

export interface TlsSettings {
  certFile: string;
  keyFile: string;
  /** Require client certificates signed by this CA (mTLS). */
  clientCaFile?: string;
}

type IdentityListener = Parameters<grpc.experimental.CertificateProvider['addIdentityCertificateListener']>[0];
type CaListener = Parameters<grpc.experimental.CertificateProvider['addCaCertificateListener']>[0];

class ReloadableCertificateProvider implements grpc.experimental.CertificateProvider {
  private identity: { certificate: Buffer; privateKey: Buffer } | undefined;
  private ca: { caCertificate: Buffer } | undefined;
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();

  constructor(private readonly settings: TlsSettings) {
    this.read();
  }

  /** Reads the files; throws (naming no path) when one cannot be read. */
  read(): void {
    const certificate = readFileSync(this.settings.certFile);
    const privateKey = readFileSync(this.settings.keyFile);
    const ca = this.settings.clientCaFile === undefined ? undefined : readFileSync(this.settings.clientCaFile);
    this.identity = { certificate, privateKey };
    this.ca = ca && { caCertificate: ca };
    for (const l of this.identityListeners) l(this.identity);
    if (this.ca) for (const l of this.caListeners) l(this.ca);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    // Asynchronously: grpc-js subscribes before it registers the watcher that applies updates.
    queueMicrotask(() => this.identity && this.identityListeners.has(listener) && listener(this.identity));
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => this.ca && this.caListeners.has(listener) && listener(this.ca));
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
}

export interface ServerTls {
  credentials: grpc.ServerCredentials;
  /** Re-reads the files; on failure logs and keeps serving the previous certificate. */
  reload(logger: Logger): boolean;
}

/**
 * Re-reads `tls` on every SIGHUP until the returned function is called (a server's close). Returns
 * a no-op without TLS.
 */
export function reloadOnSighup(tls: ServerTls | undefined, logger: Logger): () => void {
  if (!tls) return () => {};
  const onHup = () => void tls.reload(logger);
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

/** Server credentials for `settings`; throws if the files cannot be read at start. */
export function createServerTls(settings: TlsSettings): ServerTls {
  const provider = new ReloadableCertificateProvider(settings);
  const mtls = settings.clientCaFile !== undefined;
  // grpc-js 1.14 passes this function's first argument on as the identity provider and its second
  // as the CA provider (the parameter names in its typings are the other way round).
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, mtls ? provider : null, mtls);
  return {
    credentials,
    reload: (logger) => {
      try {
        provider.read();
        logger.info('Reloaded the TLS certificate');
        return true;
      } catch (err) {
        logger.error('Failed to reload the TLS certificate; still serving the previous one', { error: (err as NodeJS.ErrnoException).code ?? 'unreadable' });
        return false;
      }
    },
  };
}
