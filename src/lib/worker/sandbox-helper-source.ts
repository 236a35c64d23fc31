/**
 * The program a sandbox slot runs inside its long-lived bwrap (see sandbox-slot.ts), as CommonJS for
 * `node -e`, so that it works the same from src/ under vitest and from dist/. It is root inside the
 * sandbox's namespaces with only CAP_SETUID and CAP_SETGID (setpriv gave up the rest before it
 * started) and no_new_privs; it starts each action as the unprivileged host uid, and between actions
 * empties the sandbox's private /tmp, /dev/shm, /dev/mqueue and SysV IPC objects.
 *
 * Configuration (JSON in argv[1]): `uid`, `gid` of actions; `joinFds` (the slot cgroup's
 * `cgroup.procs`, opened by the worker), `homeFds` (the worker's own), which the helper writes its pid
 * to around each fork so the action starts inside the slot cgroup; `keep`, names in /tmp that bwrap
 * made for the bind mounts (root-owned, never written by an action, never removed).
 *
 * Messages in: `{id, type:'run', file, args, argv0, cwd, env, stdoutPath, stderrPath}`,
 * `{id, type:'signal', signal}`, `{id, type:'reset'}`. Out: `{type:'ready'}`, `{id, type:'spawn'}`,
 * `{id, type:'exit', code, signal}`, `{id, type:'error', stage, code, message}`, `{id, type:'reset', error?}`.
 */
import { START_COMMAND_SOURCE } from './spawner-process.js';

export const SANDBOX_HELPER_SOURCE = `
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const cfg = JSON.parse(process.argv[1]);
process.on('disconnect', () => process.exit(0));
const send = (m) => { if (process.connected) process.send(m); };
// Reopened through /proc so the new descriptors are close-on-exec (Node opens every file so) and the
// inherited ones, which an action would otherwise inherit in turn, are closed.
const reopen = (fd) => { const f = fs.openSync('/proc/self/fd/' + fd, 'w'); fs.closeSync(fd); return f; };
const join = cfg.joinFds.map(reopen);
const home = cfg.homeFds.map(reopen);
// Any other descriptor the worker inherited and did not mark close-on-exec would reach every action:
// close those (Node's own, and the IPC channel, are close-on-exec).
for (const name of fs.readdirSync('/proc/self/fd')) {
  const fd = Number(name);
  if (fd <= 2 || join.includes(fd) || home.includes(fd)) continue;
  let flags = '';
  try { flags = /flags:\\s*([0-7]+)/.exec(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1]; } catch (e) { continue; }
  if ((parseInt(flags, 8) & 0o2000000) === 0) { try { fs.closeSync(fd); } catch (e) {} }
}
const children = new Map();

${START_COMMAND_SOURCE}
function run(m) {
  const pid = String(process.pid);
  const child = startCommand(
    m,
    { uid: cfg.uid, gid: cfg.gid },
    () => { for (const f of join) fs.writeSync(f, pid); },
    () => { for (const f of home) { try { fs.writeSync(f, pid); } catch (e) {} } },
  );
  if (!child) return;
  children.set(m.id, child);
  child.once('error', () => children.delete(m.id));
  child.once('exit', () => children.delete(m.id));
}

// Removes everything below dir that lives on dir's own file system, without following symlinks and
// never crossing into another mount. Runs as the action uid (seteuid), which owns all of it.
function empty(dir, keep) {
  let dev;
  try { dev = fs.lstatSync(dir).dev; } catch (e) { return; }
  const stack = [];
  for (const name of fs.readdirSync(dir)) if (!keep.includes(name)) stack.push({ p: dir + '/' + name, open: false });
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    let st;
    try { st = fs.lstatSync(top.p); } catch (e) { stack.pop(); continue; }
    if (st.dev !== dev) { stack.pop(); continue; }
    if (!st.isDirectory()) { fs.unlinkSync(top.p); stack.pop(); continue; }
    if (!top.open) {
      top.open = true;
      if ((st.mode & 0o700) !== 0o700) fs.chmodSync(top.p, 0o700);
      for (const name of fs.readdirSync(top.p)) stack.push({ p: top.p + '/' + name, open: false });
      continue;
    }
    fs.rmdirSync(top.p);
    stack.pop();
  }
}

function hasSysvObjects() {
  for (const kind of ['shm', 'msg', 'sem']) {
    let text = '';
    try { text = fs.readFileSync('/proc/sysvipc/' + kind, 'utf8'); } catch (e) {}
    if (text.trim().split('\\n').length > 1) return true;
  }
  return false;
}

function reset(m) {
  let error;
  try {
    process.seteuid(cfg.uid);
    try {
      empty('/tmp', cfg.keep);
      empty('/dev/shm', []);
      empty('/dev/mqueue', []);
    } finally {
      process.seteuid(0);
    }
    if (hasSysvObjects()) {
      const r = spawnSync('/usr/bin/ipcrm', ['--all'], { uid: cfg.uid, gid: cfg.gid, stdio: 'ignore', env: {} });
      if (r.error || r.status !== 0 || hasSysvObjects()) throw new Error('ipcrm left SysV IPC objects');
    }
  } catch (e) {
    error = String((e && e.message) || e);
  }
  send({ id: m.id, type: 'reset', ...(error ? { error } : {}) });
}

process.on('message', (m) => {
  if (m.type === 'run') run(m);
  else if (m.type === 'reset') reset(m);
  else if (m.type === 'signal') {
    const child = children.get(m.id);
    if (child && child.pid !== undefined) { try { process.kill(-child.pid, m.signal); } catch (e) {} }
  }
});
send({ type: 'ready' });
`;
