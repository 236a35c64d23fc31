/**
 * Facts about listen addresses shared by the config checks (lib/config) and the servers' start-up
 * warnings (server/exposure-warning.ts).
 */
import { isIP } from 'node:net';

/** Whether `address` (`host:port`, `[v6]:port` or `unix:/path`) is reachable only from this host. */
export function isLoopbackAddress(address: string): boolean {
  if (address.startsWith('unix:')) return true;
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}
