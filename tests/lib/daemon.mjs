// A real warmbox daemon for the tests of official clients (tests/e2b,
// tests/mcp): `warmbox pool start` with the HTTP API on a free loopback
// port, in its own state dir, uid range (the caller's, from
// tests/uid_ranges.h) and cgroup parent, with the `base` template built.
// stop() checks that nothing of it is left: no process in its uid range, no
// state dir.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
export const SOURCE_DIR = path.resolve(HERE, '../..')
export const BUILD_DIR = path.resolve(process.env.WARMBOX_BUILD_DIR || path.join(SOURCE_DIR, 'build'))
export const WARMBOX = path.join(BUILD_DIR, 'warmbox')

// The daemon's whole span: slot 0 (the store's) and 128 sandbox ranges
// (the default --uid-slots; src/sandbox/ns/uid_slots.h).
export const UID_COUNT = 129 * 65536

// Empty when these tests can run here, else why not (they skip with it).
export function skipReason () {
  if (process.getuid() !== 0) return 'needs root (sandboxes: uid maps, cgroups)'
  for (const p of [WARMBOX, path.join(BUILD_DIR, 'warmbox-agent')]) {
    try { fs.accessSync(p, fs.constants.X_OK) } catch { return `${p} missing: build it first` }
  }
  if (spawnSync('sh', ['-c', 'command -v mmdebstrap']).status !== 0) {
    return 'mmdebstrap missing (run scripts/setup): the base template is built with it'
  }
  return ''
}

function freePort () {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

// Whether GET /healthz answers 200 (the daemon is up).
function healthy (port) {
  return new Promise(resolve => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.write('GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
    })
    let data = ''
    s.setTimeout(1000, () => { s.destroy(); resolve(false) })
    s.on('data', d => { data += d })
    s.on('error', () => resolve(false))
    s.on('close', () => resolve(data.startsWith('HTTP/1.1 200')))
  })
}

// The pids whose real uid is in [lo, hi).
export function pidsInUidRange (lo, hi = lo + UID_COUNT) {
  const out = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const status = fs.readFileSync(`/proc/${name}/status`, 'utf8')
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)[1])
      if (uid >= lo && uid < hi) out.push(Number(name))
    } catch { /* gone */ }
  }
  return out
}

export async function eventually (pred, timeoutMs = 15000, intervalMs = 20) {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await pred()) return true
    if (Date.now() > end) return false
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}

export class Daemon {
  // uidBase: the sandboxes' host uid range (the suite's, from
  // tests/uid_ranges.h); name: for the temporary dir and cgroup parent;
  // stateDir: a state dir to reuse (kept at stop); templates: built before
  // the daemon starts (a first use would take longer than a create waits).
  constructor ({ uidBase, name, args = [], templates = ['base'], cgroupParent = `/warmbox-${name}-test-${process.pid}`, stateDir } = {}) {
    if (!uidBase || !name) throw new Error('Daemon: uidBase and name are required')
    this.uidBase = uidBase
    this.args = args
    this.templates = templates
    this.cgroupParent = cgroupParent
    this.tmp = stateDir || fs.mkdtempSync(path.join(os.tmpdir(), `wb-${name}-test-`))
    this.ownsState = !stateDir
    this.socket = path.join(this.tmp, 'pool.sock')
    this.logPath = path.join(this.tmp, 'daemon.log')
    // The base template's root filesystem is built once per build dir (as
    // template_test's) and imported into each state dir.
    this.env = {
      ...process.env,
      WARMBOX_USERNS_BASE: String(uidBase),
      WARMBOX_CGROUP_PARENT: cgroupParent,
      WARMBOX_TEMPLATE_CACHE: process.env.WARMBOX_TEMPLATE_CACHE || path.join(BUILD_DIR, 'template-cache')
    }
    delete this.env.LISTEN_FDS
    delete this.env.NOTIFY_SOCKET
  }

  cli (...args) { return [WARMBOX, '--state-dir', this.tmp, ...args] }

  async start () {
    // E2B's default templates first: built on first use, they would take
    // longer than the SDK waits for a create.
    for (const t of this.templates) {
      const argv = this.cli('template', 'build-debian', '-q', t)
      const built = spawnSync(argv[0], argv.slice(1), { env: this.env, encoding: 'utf8', timeout: 900_000 })
      if (built.status !== 0) throw new Error(`template build-debian ${t}: ${built.stderr || built.error}`)
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = await freePort()
      const argv = this.cli('pool', 'start', '--socket', this.socket, '--http', `127.0.0.1:${this.port}`, ...this.args)
      const log = fs.openSync(this.logPath, 'a')
      this.proc = spawn(argv[0], argv.slice(1), { env: this.env, stdio: ['ignore', log, log] })
      fs.closeSync(log)
      this.exited = new Promise(resolve => this.proc.on('exit', code => resolve(code)))
      let dead = false
      this.proc.on('exit', () => { dead = true })
      await eventually(async () => dead || await healthy(this.port), 20000)
      if (!dead) {
        this.token = fs.readFileSync(path.join(this.tmp, 'http-token'), 'utf8').trim()
        return this
      }
      if (!this.log().includes('in use')) throw new Error(`daemon exited:\n${this.log()}`)
    }
    throw new Error(`no free port after 3 tries:\n${this.log()}`)
  }

  get url () { return `http://127.0.0.1:${this.port}` }

  // The options every SDK call takes to reach this daemon.
  get opts () { return { apiKey: this.token, apiUrl: this.url, sandboxUrl: this.url } }

  log () {
    try { return fs.readFileSync(this.logPath, 'utf8') } catch { return '' }
  }

  // Stops the daemon and returns the problems found (empty when clean).
  async stop () {
    const problems = []
    if (this.proc && this.proc.exitCode === null) {
      const r = spawnSync(this.cli('pool', 'stop', '--socket', this.socket)[0],
        this.cli('pool', 'stop', '--socket', this.socket).slice(1), { env: this.env, timeout: 60000 })
      if (r.status !== 0) this.proc.kill('SIGTERM')
      const code = await Promise.race([this.exited, new Promise(resolve => setTimeout(() => resolve('timeout'), 30000))])
      if (code === 'timeout') {
        problems.push('daemon still running 30 s after pool stop; killed')
        this.proc.kill('SIGKILL')
        await this.exited
      }
    }
    if (!await eventually(() => pidsInUidRange(this.uidBase).length === 0, 10000)) {
      problems.push(`sandbox processes left: ${pidsInUidRange(this.uidBase)}`)
    }
    const log = this.log()
    if (this.ownsState) fs.rmSync(this.tmp, { recursive: true, force: true })
    // The cgroup parent: v2's, and v1's in each hierarchy (cpu, memory, pids ...).
    let hierarchies = []
    try { hierarchies = fs.readdirSync('/sys/fs/cgroup') } catch { /* no cgroup fs */ }
    for (const dir of [`/sys/fs/cgroup${this.cgroupParent}`, ...hierarchies.map(h => `/sys/fs/cgroup/${h}${this.cgroupParent}`)]) {
      try { fs.rmdirSync(dir) } catch { /* absent or not empty: the leak check is the uid scan */ }
    }
    if (problems.length) problems.push(`daemon log:\n${log}`)
    return problems
  }
}

// A suite's Daemon and pidsInUidRange, in its own uid range.
export function forSuite ({ uidBase, name, stateDir }) {
  class SuiteDaemon extends Daemon {
    constructor (opts = {}) { super({ uidBase, name, stateDir, ...opts }) }
  }
  return {
    Daemon: SuiteDaemon,
    pidsInUidRange: (lo = uidBase, hi = lo + UID_COUNT) => pidsInUidRange(lo, hi)
  }
}
