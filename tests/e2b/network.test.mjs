// The network surface of the ns driver's egress mode (docs/network.md,
// docs/e2b.md "Network"): the official E2B SDK's allowInternetAccess,
// network.allowOut/denyOut and updateNetwork; warmbox's own HTTP API
// (network on create, PUT /v1/sandboxes/{id}/network, inspect); `pool run
// --network`; the per-sandbox metrics. Run by ctest as net_surface_test; by
// hand: `sudo node --test tests/e2b/network.test.mjs` after `make build`.
//
// No traffic leaves the host: the addresses in the policies are
// documentation ranges no test connects to, and the one packet the sandbox
// sends is a DNS query its own resolver (the daemon's dnsmasq on the host's
// loopback) answers REFUSED itself (the policy names no domain).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from 'e2b'

import * as lib from '../lib/daemon.mjs'

const { Daemon } = lib.forSuite({ uidBase: 1840000000, name: 'netsurface' }) // tests/uid_ranges.h, kNetSurfaceTest

const skip = lib.skipReason() ||
  (spawnSync('sh', ['-c', 'command -v slirp4netns && command -v dnsmasq && command -v nft']).status !== 0
    ? 'needs slirp4netns, dnsmasq and nft (scripts/setup)'
    : false)

// The interfaces of a sandbox, from its /proc/net/dev (no sysfs inside).
const ifaces = text => text.trim().split('\n').slice(2).map(l => l.split(':')[0].trim()).sort()
const interfaces = async s => ifaces((await s.commands.run('cat /proc/net/dev')).stdout)

describe('network surface', { skip }, () => {
  let d
  const made = []
  const create = async (opts = {}) => {
    const s = await Sandbox.create({ ...d.opts, timeoutMs: 120_000, ...opts })
    made.push(s.sandboxId)
    return s
  }
  const api = async (method, path, body) => {
    const res = await fetch(`${d.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${d.token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    let parsed = text
    try { parsed = JSON.parse(text) } catch { /* NDJSON or text: kept as is */ }
    return { status: res.status, body: parsed }
  }
  const inspect = async id => (await api('GET', `/v1/sandboxes/${id}`)).body
  const poolRun = (...args) => {
    const argv = d.cli('pool', 'run', '--socket', d.socket, '--image', 'base', ...args)
    return spawnSync(argv[0], argv.slice(1), { env: d.env, encoding: 'utf8', timeout: 120_000, input: '' })
  }

  before(async () => { d = await new Daemon().start() })
  after(async () => {
    if (!d) return
    for (const id of made) await Sandbox.kill(id, d.opts).catch(() => {})
    const problems = await d.stop()
    assert.deepEqual(problems, [])
    // Nothing of this suite's policies is left in the kernel (the table
    // itself goes with the daemon).
    const t = spawnSync('nft', ['list', 'table', 'inet', 'warmbox'], { encoding: 'utf8' })
    assert.doesNotMatch(t.stdout || '', /198\.51\.100\.|203\.0\.113\./, 'rules left behind')
  })

  it('E2B: no network by default and with allowInternetAccess false (only lo)', async () => {
    const plain = await create()
    assert.deepEqual(await interfaces(plain), ['lo'])
    assert.equal((await plain.getInfo()).allowInternetAccess, false)
    const off = await create({ allowInternetAccess: false })
    assert.deepEqual(await interfaces(off), ['lo'])
    assert.equal((await inspect(off.sandboxId)).network.mode, 'none')
  })

  it('E2B: an allowOut/denyOut policy is the daemon\'s, and updateNetwork replaces it', async () => {
    const s = await create({ network: { allowOut: ['198.51.100.0/24'], denyOut: ['0.0.0.0/0'] } })
    assert.equal((await interfaces(s)).length, 2, 'lo and the egress interface')
    let net = (await inspect(s.sandboxId)).network
    assert.equal(net.mode, 'egress')
    assert.deepEqual(net.allow_out, ['198.51.100.0/24'])
    assert.deepEqual(net.deny_out, [])
    const info = await s.getInfo()
    assert.equal(info.allowInternetAccess, true)
    assert.deepEqual(info.network.allowOut, ['198.51.100.0/24'])

    await s.updateNetwork({ allowOut: ['203.0.113.0/24'], denyOut: ['0.0.0.0/0'] })
    net = (await inspect(s.sandboxId)).network
    assert.deepEqual(net.allow_out, ['203.0.113.0/24'])
    // In the kernel: the sandbox's allow set holds the new range, not the old.
    const table = spawnSync('nft', ['list', 'table', 'inet', 'warmbox'], { encoding: 'utf8' }).stdout
    assert.match(table, /203\.0\.113\.0\/24/)
    assert.doesNotMatch(table, /198\.51\.100\.0\/24/)

    // Everything denied, on a sandbox that has a network: it keeps its
    // interface and refuses every address.
    await s.updateNetwork({ allowInternetAccess: false })
    net = (await inspect(s.sandboxId)).network
    assert.deepEqual(net.deny_out, ['0.0.0.0/0', '::/0'])
    assert.equal((await s.getInfo()).allowInternetAccess, false)
  })

  it('E2B: updateNetwork gives a sandbox without a network one', async () => {
    const s = await create({ allowInternetAccess: false })
    await s.updateNetwork({ denyOut: ['198.51.100.0/24'] })
    const net = (await inspect(s.sandboxId)).network
    assert.equal(net.mode, 'egress')
    assert.deepEqual(net.deny_out, ['198.51.100.0/24'])
    assert.equal((await interfaces(s)).length, 2)
  })

  it('E2B: fields warmbox cannot honour are refused by name', async () => {
    await assert.rejects(create({ network: { egressProxy: { address: 'proxy.test:1080' } } }), /network\.egressProxy/)
    await assert.rejects(create({ network: { maskRequestHost: '${PORT}.x.test' } }), /network\.maskRequestHost/)
    await assert.rejects(create({ network: { allowPublicTraffic: true } }), /network\.allowPublicTraffic/)
    await assert.rejects(create({ network: { allowOut: ['198.51.100.7'], denyOut: ['198.51.100.0/24'] } }), /network\.allowOut/)
  })

  it('HTTP API: network on create, PUT .../network, inspect with counters; metrics', async () => {
    const made1 = await api('POST', '/v1/sandboxes', {
      image: 'base', timeout: 120, network: { mode: 'egress', allow_out: ['198.51.100.0/24'] }
    })
    assert.equal(made1.status, 201, JSON.stringify(made1.body))
    const id = made1.body.id
    made.push(id)
    assert.equal(made1.body.network.mode, 'egress')
    assert.deepEqual(made1.body.network.allow_out, ['198.51.100.0/24'])
    for (const k of ['bytes_out', 'bytes_in', 'refused']) assert.equal(typeof made1.body.network[k], 'number')

    const bad = await api('PUT', `/v1/sandboxes/${id}/network`, { allow_out: ['10.0.0.1/8'] })
    assert.equal(bad.status, 400)
    assert.match(bad.body.error, /network\.allow_out/)
    const upd = await api('PUT', `/v1/sandboxes/${id}/network`, { allow_out: ['203.0.113.0/24'], deny_out: ['203.0.113.9'] })
    assert.equal(upd.status, 200, JSON.stringify(upd.body))
    assert.deepEqual(upd.body.network.allow_out, ['203.0.113.0/24'])
    assert.deepEqual(upd.body.network.deny_out, ['203.0.113.9'])
    assert.deepEqual((await inspect(id)).network.deny_out, ['203.0.113.9'])
    const none = await api('PUT', `/v1/sandboxes/${id}/network`, { mode: 'none' })
    assert.equal(none.status, 409, 'a network is not taken away')

    // One DNS query (the sandbox's resolver refuses it itself: the policy
    // names no domain) counts in bytes out, in inspect and in the metrics.
    const q = await api('POST', `/v1/sandboxes/${id}/processes`, { cmd: ['getent', 'hosts', 'nothing.test'] })
    assert.equal(q.status, 200, JSON.stringify(q.body))
    assert.ok((await inspect(id)).network.bytes_out > 0, 'bytes_out after a DNS query')
    const m = await fetch(`${d.url}/metrics`, { headers: { Authorization: `Bearer ${d.token}` } }).then(r => r.text())
    const out = new RegExp(`^warmbox_sandbox_network_bytes_total\\{sandbox="${id}",direction="out"\\} (\\d+)$`, 'm').exec(m)
    assert.ok(out && Number(out[1]) > 0, `bytes out of ${id} in the metrics:\n${m}`)
    assert.match(m, new RegExp(`^warmbox_sandbox_network_refused_total\\{sandbox="${id}"\\} \\d+$`, 'm'))
  })

  it('pool run: --network egress attaches at claim; none by default', () => {
    let r = poolRun('--', 'cat', '/proc/net/dev')
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(ifaces(r.stdout), ['lo'])
    r = poolRun('--network', 'egress', '--allow-out', '198.51.100.0/24', '--', 'cat', '/proc/net/dev')
    assert.equal(r.status, 0, r.stderr)
    assert.equal(ifaces(r.stdout).length, 2, r.stdout)
    r = poolRun('--allow-out', '198.51.100.0/24', '--', 'true')
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /--network egress/)
  })

  it('POST /v1/run takes the network object, and refuses a bad entry by name', async () => {
    let r = await api('POST', '/v1/run', { image: 'base', cmd: ['cat', '/proc/net/dev'], network: { mode: 'egress', deny_out: ['198.51.100.0/24'] } })
    assert.equal(r.status, 200, JSON.stringify(r.body))
    assert.equal(ifaces(Buffer.from(r.body.stdout, 'base64').toString()).length, 2)
    r = await api('POST', '/v1/run', { image: 'base', cmd: ['true'], network: { mode: 'egress', allow_out: ['exa mple.test'] } })
    assert.equal(r.status, 400)
    assert.match(r.body.error, /network\.allow_out/)
  })
})
