/**
 * Layering of src/, checked by `npm run lint:deps` (part of `npm test`). Imports go downward only:
 *
 *   commands ─▶ server ─▶ lib
 *   (only commands/serve/* import server)
 *
 *   inside lib, top to bottom:
 *     cli                        (commands' helpers; nothing else in lib imports it)
 *     inspect                    (reproduce/diff_actions: read actions for people; only commands use it)
 *     config                     (config tree, validation, storage factory)
 *     asset                      (Remote Asset: index, downloads; only config and servers use it)
 *     scheduler, worker          (peers: neither imports the other)
 *     actioncache
 *     bytestream                 (resumable ByteStream uploads over a blob store)
 *     blobstore
 *     client                     (REAPI client; the grpc-* stores above are adapters over it)
 *     cas                        (Merkle trees, Action/Command building)
 *     digest ─▶ errors ─▶ proto  (leaves; util imports no other lib folder)
 *
 * Rules are per folder, so new files inside a folder need no new rule. There are no exceptions.
 */
const lower = (folders) => `^src/lib/(${folders.join('|')})/`;
const LEAVES = ['digest', 'errors', 'proto', 'util'];

/** `from` may not import any of `to`. */
const forbid = (name, comment, from, to, extra = {}) => ({
  name,
  comment,
  severity: 'error',
  from: { path: from, ...(extra.fromNot ? { pathNot: extra.fromNot } : {}) },
  to: { path: to },
});

module.exports = {
  forbidden: [
    forbid('lib-not-to-server-or-commands', 'lib/ is the library: it never imports the servers or the CLI commands.', '^src/lib/', '^src/(server|commands)/'),
    forbid('server-not-to-commands', 'Servers are started by commands, never the other way round.', '^src/server/', '^src/commands/'),
    forbid('only-serve-commands-import-server', 'Client commands talk to servers over gRPC, they do not embed them.', '^src/commands/', '^src/server/', { fromNot: '^src/commands/serve/' }),
    forbid('cli-only-for-commands', 'lib/cli holds command helpers (flags, output); servers and the rest of lib do not use it.', '^src/(server|lib/(?!cli/))', '^src/lib/cli/'),
    forbid('inspect-only-for-commands', 'lib/inspect explains actions to people (reproduce, diff_actions); only commands use it.', '^src/(server|lib/(?!(cli|inspect)/))', '^src/lib/inspect/'),
    forbid('config-above-stores-and-roles', 'lib/config builds stores and reads every section: nothing below it imports it.', lower(['asset', 'scheduler', 'worker', 'actioncache', 'bytestream', 'blobstore', 'client', 'cas', ...LEAVES]), '^src/lib/config/'),
    forbid('asset-above-storage', 'Remote Asset is built on stores and the CAS; nothing below config uses it.', lower(['scheduler', 'worker', 'actioncache', 'bytestream', 'blobstore', 'client', 'cas', ...LEAVES]), '^src/lib/asset/'),
    forbid('scheduler-not-to-worker', 'Scheduler and worker meet only through the WorkerQueue protocol.', '^src/lib/scheduler/', '^src/lib/worker/'),
    forbid('worker-not-to-scheduler', 'Scheduler and worker meet only through the WorkerQueue protocol.', '^src/lib/worker/', '^src/lib/scheduler/'),
    forbid('roles-above-storage', 'Stores, clients and leaves know nothing of scheduling or execution.', lower(['actioncache', 'bytestream', 'blobstore', 'client', 'cas', ...LEAVES]), lower(['scheduler', 'worker'])),
    forbid('bytestream-above-blobstore', 'Resumable uploads are built on blob stores; only servers and roles use them.', lower(['actioncache', 'blobstore', 'client', 'cas', ...LEAVES]), '^src/lib/bytestream/'),
    forbid('actioncache-above-blobstore', 'The action cache is built on blob stores, not the other way round.', lower(['blobstore', 'client', 'cas', ...LEAVES]), '^src/lib/actioncache/'),
    forbid('blobstore-above-client', 'Stores may wrap the client (GrpcBlobStore); the client never uses stores.', lower(['client', 'cas', ...LEAVES]), '^src/lib/blobstore/'),
    forbid('client-above-cas', 'cas/ builds Merkle trees and Actions from data; it does no RPCs.', lower(['cas', ...LEAVES]), '^src/lib/client/'),
    forbid('cas-above-leaves', 'digest, errors, proto and util are leaves.', lower(LEAVES), '^src/lib/cas/'),
    forbid('util-is-a-leaf', 'util/ holds generic helpers (clock, logger, units, abort): no REAPI concepts.', '^src/lib/util/', lower(['digest', 'errors', 'proto'])),
    forbid('errors-below-digest', 'errors/ only needs proto (google.rpc details).', '^src/lib/errors/', '^src/lib/digest/'),
    forbid('proto-is-the-bottom', 'proto/ is generated code plus encoding helpers.', '^src/lib/proto/', lower(['digest', 'errors'])),
    forbid(
      'services-do-not-import-services',
      'gRPC services share helpers through services/request-fields.ts and capabilities-config.ts, never import each other.',
      '^src/server/services/',
      '^src/server/services/.+-service\\.ts$',
    ),
    forbid('servers-do-not-import-servers', 'apiserver, scheduler and worker share code through storage-services.ts and create-servers.ts, never by importing each other.', '^src/server/(apiserver|scheduler|worker)\\.ts$', '^src/server/(apiserver|scheduler|worker)\\.ts$'),
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve is a typo or a missing dependency.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/lib/proto/generated/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
