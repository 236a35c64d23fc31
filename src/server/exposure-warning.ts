/**
 * The start-up warning for a server reachable from the network with nothing guarding it. bzutil
 * binds loopback by default; an operator who configures another address gets told, once per port,
 * that anyone who reaches it can read and write the cache and (on the scheduler) run commands,
 * unless the port has both TLS and authentication.
 */
import { isLoopbackAddress } from '../lib/util/address.js';
import type { Logger } from '../lib/util/logger.js';

/** What guards a port. */
export interface PortGuards {
  tls: boolean;
  auth: boolean;
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
