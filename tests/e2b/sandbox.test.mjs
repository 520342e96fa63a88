// The official E2B SDK (npm `e2b`, pinned by package-lock.json) against a real
// warmbox daemon: the control plane (docs/e2b.md). Run by ctest as
// e2b_sdk_test; by hand: `sudo node --test tests/e2b/` after `make build`.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { AuthenticationError, Sandbox, SandboxError, SandboxNotFoundError } from 'e2b'

import { Daemon, eventually, skipReason } from './daemon.mjs'

const skip = skipReason()

describe('E2B control plane', { skip: skip || false }, () => {
  let d
  const made = []
  const create = async (opts = {}) => {
    const s = await Sandbox.create({ ...d.opts, timeoutMs: 120_000, ...opts })
    made.push(s.sandboxId)
    return s
  }

  before(async () => { d = await new Daemon().start() })
  after(async () => {
    if (!d) return
    for (const id of made) await Sandbox.kill(id, d.opts).catch(() => {})
    const problems = await d.stop()
    assert.deepEqual(problems, [])
  })

  it('creates a sandbox, runs a command in it and kills it', async () => {
    const s = await create({ metadata: { suite: 'e2b', n: '1' }, envs: { GREETING: 'hello' } })
    assert.match(s.sandboxId, /^[0-9a-f]{32}$/)
    const r = await s.commands.run('echo "$GREETING from $(whoami) in $PWD"')
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello from user in /home/user\n')
    assert.equal(await s.isRunning(), true)
    assert.equal(await s.kill(), true)
    assert.equal(await s.isRunning(), false)
    assert.equal(await Sandbox.kill(s.sandboxId, d.opts), false, 'a second kill finds nothing')
  })

  it('getInfo shows what create asked for', async () => {
    const s = await create({ metadata: { who: 'info' }, timeoutMs: 60_000 })
    const info = await s.getInfo()
    assert.equal(info.sandboxId, s.sandboxId)
    assert.equal(info.templateId, 'base')
    assert.deepEqual(info.metadata, { who: 'info' })
    assert.equal(info.state, 'running')
    const life = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(life >= 59_000 && life <= 61_000, `timeout of 60 s, got ${life} ms`)
    assert.ok(info.cpuCount >= 1)
    assert.ok(info.memoryMB >= 1)
  })

  it('setTimeout moves the end, both ways', async () => {
    const s = await create({ timeoutMs: 60_000 })
    await s.setTimeout(600_000)
    let info = await s.getInfo()
    assert.ok(info.endAt.getTime() - Date.now() > 500_000)
    await s.setTimeout(30_000)
    info = await s.getInfo()
    assert.ok(info.endAt.getTime() - Date.now() < 31_000)
  })

  it('an expired sandbox is gone, and the SDK says so', async () => {
    const s = await create({ timeoutMs: 1_000 })
    assert.ok(await eventually(async () => !(await s.isRunning()), 15_000), 'still running after its timeout')
    await assert.rejects(s.getInfo(), SandboxNotFoundError)
    await assert.rejects(s.commands.run('true'), err => err instanceof SandboxError)
  })

  it('pauses and resumes through connect, with files and processes intact', async () => {
    const s = await create()
    await s.files.write('/home/user/kept.txt', 'still here')
    const bg = await s.commands.run('sleep 300', { background: true })
    assert.equal(await s.pause(), true)
    assert.equal(await Sandbox.pause(s.sandboxId, d.opts), false, 'already paused')
    assert.equal((await s.getInfo()).state, 'paused')
    const again = await Sandbox.connect(s.sandboxId, d.opts)
    assert.equal((await again.getInfo()).state, 'running')
    assert.equal(await again.files.read('/home/user/kept.txt'), 'still here')
    const pids = (await again.commands.list()).map(p => p.pid)
    assert.ok(pids.includes(bg.pid), `pid ${bg.pid} in ${pids}`)
  })

  it('lists with metadata and state filters, page by page', async () => {
    const tag = `list-${process.pid}`
    const ids = []
    for (let i = 0; i < 3; i++) ids.push((await create({ metadata: { tag, 'k y': 'a b&c=d/é' } })).sandboxId)
    await Sandbox.pause(ids[0], d.opts)
    const seen = []
    const pages = Sandbox.list({ ...d.opts, query: { metadata: { tag, 'k y': 'a b&c=d/é' } }, limit: 1 })
    while (pages.hasNext) {
      const items = await pages.nextItems()
      assert.ok(items.length <= 1)
      seen.push(...items.map(i => i.sandboxId))
    }
    assert.deepEqual([...seen].sort(), [...ids].sort())
    const running = await Sandbox.list({ ...d.opts, query: { metadata: { tag }, state: ['running'] } }).nextItems()
    assert.deepEqual(running.map(i => i.sandboxId).sort(), ids.slice(1).sort())
    const paused = await Sandbox.list({ ...d.opts, query: { metadata: { tag }, state: ['paused'] } }).nextItems()
    assert.deepEqual(paused.map(i => i.sandboxId), [ids[0]])
  })

  it('reports metrics from the cgroups', async () => {
    const s = await create()
    await s.commands.run('head -c 20000000 /dev/zero | md5sum')
    await s.commands.run('head -c 3000000 /dev/zero > /tmp/three-mb')
    const m = await s.getMetrics()
    // The writable layer: the 3 MB file counts; the total is its size cap.
    assert.ok(m[0].diskUsed >= 3000000, `diskUsed ${m[0].diskUsed}`)
    assert.ok(m[0].diskTotal > m[0].diskUsed, `diskTotal ${m[0].diskTotal}`)
    assert.ok(m.length >= 1)
    assert.ok(m[0].memUsed > 0, `memUsed ${m[0].memUsed}`)
    assert.ok(m[0].memTotal >= m[0].memUsed)
    assert.ok(m[0].cpuCount >= 1)
    assert.ok(m[0].cpuUsedPct >= 0 && m[0].cpuUsedPct <= 100)
  })

  it('refuses a wrong API key and a wrong access token', async () => {
    await assert.rejects(Sandbox.create({ ...d.opts, apiKey: 'not-the-key' }), AuthenticationError)
    await assert.rejects(Sandbox.list({ ...d.opts, apiKey: 'not-the-key' }).nextItems(), AuthenticationError)
    const s = await create()
    // The same sandbox reached with another sandbox's access token.
    const other = await create()
    const headers = { 'X-Access-Token': other.envdAccessToken, 'E2b-Sandbox-Id': s.sandboxId, 'E2b-Sandbox-Port': '49983' }
    assert.match(other.envdAccessToken, /^[0-9a-f]{32}$/)
    assert.notEqual(other.envdAccessToken, s.envdAccessToken)
    const res = await fetch(`${d.url}/files?path=/etc/hostname`, { headers })
    assert.equal(res.status, 401)
    const own = await fetch(`${d.url}/files?path=/etc/hostname`, { headers: { ...headers, 'X-Access-Token': s.envdAccessToken } })
    assert.equal(own.status, 200)
  })

  it('an unknown sandbox is not found on every call', async () => {
    const id = '0'.repeat(32)
    await assert.rejects(Sandbox.getInfo(id, d.opts), SandboxNotFoundError)
    await assert.rejects(Sandbox.connect(id, d.opts), SandboxNotFoundError)
    await assert.rejects(Sandbox.setTimeout(id, 10_000, d.opts), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(id, d.opts), false)
    const res = await fetch(`${d.url}/health`, { headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '49983' } })
    assert.equal(res.status, 502)
  })

  it('reaches a service in the sandbox through E2b-Sandbox-Port', async () => {
    const s = await create()
    await s.files.write('/home/user/www/index.html', 'served from the sandbox')
    await s.commands.run('cd /home/user/www && exec python3 -m http.server 8000 --bind 127.0.0.1', { background: true, timeoutMs: 0 })
    const headers = { 'E2b-Sandbox-Id': s.sandboxId, 'E2b-Sandbox-Port': '8000', 'X-Access-Token': s.envdAccessToken }
    let res
    assert.ok(await eventually(async () => {
      res = await fetch(`${d.url}/index.html`, { headers })
      return res.status === 200
    }, 15_000), `last status ${res && res.status}`)
    assert.equal(await res.text(), 'served from the sandbox')
    const none = await fetch(`${d.url}/`, { headers: { ...headers, 'E2b-Sandbox-Port': '8001' } })
    assert.equal(none.status, 502)
    assert.equal((await none.json()).code, 502)
    const noToken = await fetch(`${d.url}/index.html`, { headers: { ...headers, 'X-Access-Token': 'x' } })
    assert.equal(noToken.status, 401)
  })

  it('serves 20 SDK sandboxes at once', async () => {
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => create({ metadata: { many: String(i) } })))
    const outs = await Promise.all(all.map((s, i) => s.commands.run(`echo ${i}`)))
    assert.deepEqual(outs.map(o => o.stdout), all.map((_, i) => `${i}\n`))
    await Promise.all(all.map(s => s.kill()))
  })
})
