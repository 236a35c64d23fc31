/**
 * Which URLs the Remote Asset downloader may fetch. A Fetch server downloads what any client names,
 * so without a policy it is a request forgery gadget into the network it runs in (cloud metadata at
 * 169.254.169.254, admin ports on 127.0.0.1, the private LAN). By default every address a URL's host
 * resolves to must be public: loopback, link-local, private, unique-local, CGNAT, unspecified,
 * multicast and IPv4-mapped IPv6 addresses are refused with PERMISSION_DENIED naming the rule. The
 * check is made on the addresses actually connected to (see http-downloader.ts: the lookup that
 * the socket uses), and again on every redirect, so DNS names pointing at 127.0.0.1 and redirects
 * to private addresses are caught. `allow` patterns (`--asset_allow`, config `asset.allow`) name
 * URLs that may reach any address: `*` matches any run of characters, e.g. `http://127.0.0.1:*`.
 */
import net from 'node:net';
import { StatusError } from '../errors/status-error.js';

const RULES: readonly { rule: string; family: 'ipv4' | 'ipv6'; subnet: string; prefix: number }[] = [
  { rule: 'loopback', family: 'ipv4', subnet: '127.0.0.0', prefix: 8 },
  { rule: 'loopback', family: 'ipv6', subnet: '::1', prefix: 128 },
  { rule: 'unspecified', family: 'ipv4', subnet: '0.0.0.0', prefix: 8 },
  { rule: 'unspecified', family: 'ipv6', subnet: '::', prefix: 128 },
  { rule: 'private', family: 'ipv4', subnet: '10.0.0.0', prefix: 8 },
  { rule: 'private', family: 'ipv4', subnet: '172.16.0.0', prefix: 12 },
  { rule: 'private', family: 'ipv4', subnet: '192.168.0.0', prefix: 16 },
  { rule: 'private', family: 'ipv4', subnet: '100.64.0.0', prefix: 10 },
  { rule: 'private', family: 'ipv6', subnet: 'fc00::', prefix: 7 },
  { rule: 'link-local', family: 'ipv4', subnet: '169.254.0.0', prefix: 16 },
  { rule: 'link-local', family: 'ipv6', subnet: 'fe80::', prefix: 10 },
  { rule: 'multicast', family: 'ipv4', subnet: '224.0.0.0', prefix: 4 },
  { rule: 'multicast', family: 'ipv6', subnet: 'ff00::', prefix: 8 },
  { rule: 'broadcast', family: 'ipv4', subnet: '255.255.255.255', prefix: 32 },
  // IPv4 inside IPv6 (::ffff:127.0.0.1, NAT64, 6to4) would smuggle any of the above.
  { rule: 'ipv4-mapped', family: 'ipv6', subnet: '::ffff:0:0', prefix: 96 },
  { rule: 'ipv4-mapped', family: 'ipv6', subnet: '64:ff9b::', prefix: 96 },
  { rule: 'ipv4-mapped', family: 'ipv6', subnet: '2002::', prefix: 16 },
  { rule: 'ipv4-compatible', family: 'ipv6', subnet: '::', prefix: 96 },
];

const LISTS = RULES.map((r) => {
  const list = new net.BlockList();
  list.addSubnet(r.subnet, r.prefix, r.family);
  return { rule: r.rule, family: r.family, list };
});

export class UrlPolicy {
  private readonly allow: readonly RegExp[];

  constructor(readonly allowPatterns: readonly string[] = []) {
    this.allow = allowPatterns.map((p) => new RegExp(`^${p.split('*').map(escapeRegExp).join('.*')}$`, 'i'));
  }

  /** Whether `url` matches an allow pattern (then it may reach any address). */
  isAllowed(url: URL): boolean {
    // Matched without user info: "http://127.0.0.1:80@evil.example/" must not pass for 127.0.0.1.
    const text = `${url.protocol}//${url.host}${url.pathname}${url.search}`;
    return this.allow.some((re) => re.test(text) || re.test(text.replace(/\/$/, '')));
  }

  /** PERMISSION_DENIED if `url` (not allowed by a pattern) would connect to `address`. */
  checkAddress(url: URL, address: string): void {
    if (this.isAllowed(url)) return;
    const rule = refusedBy(address);
    if (rule) {
      throw StatusError.permissionDenied(
        `Refused to fetch ${JSON.stringify(url.origin)}: it resolves to ${address}, a ${rule} address (rule "${rule}"); allow it with --asset_allow or asset.allow`,
      );
    }
  }
}

/** The rule that refuses `address`, or undefined for a public address. */
export function refusedBy(address: string): string | undefined {
  const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
  if (!family) return 'not-an-address';
  return LISTS.find((l) => l.family === family && l.list.check(address, family))?.rule;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
