/**
 * The start-up warning for a server reachable from the network with nothing guarding it. bzutil
 * binds loopback by default; an operator who configures another address gets told, once per port,
 * that anyone who reaches it can read and write the cache and (on the scheduler) run commands.
 * There is no TLS or authentication to configure yet, so every non-loopback address is reported.
 */
import { isIP } from 'node:net';
import type { Logger } from '../lib/util/logger.js';

/** What guards a port; both false until TLS and authentication exist. */
export interface PortGuards {
  tls: boolean;
  auth: boolean;
}

/** Whether `address` (`host:port`, `[v6]:port` or `unix:/path`) is reachable only from this host. */
export function isLoopbackAddress(address: string): boolean {
  if (address.startsWith('unix:')) return true;
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** Warns when `address` is not loopback and lacks TLS or authentication; returns whether it did. */
export function warnIfExposed(logger: Logger, what: string, address: string, guards: PortGuards = { tls: false, auth: false }): boolean {
  if (isLoopbackAddress(address) || (guards.tls && guards.auth)) return false;
  const missing = [guards.tls ? undefined : 'TLS', guards.auth ? undefined : 'authentication'].filter(Boolean).join(' or ');
  logger.warn(
    `The ${what} listens on ${address} without ${missing}: anyone who can reach it can read and write the cache${what.includes('scheduler') || what.includes('worker') ? ' and run commands' : ''}. Bind 127.0.0.1, or keep it on a trusted network.`,
    { address },
  );
  return true;
}
