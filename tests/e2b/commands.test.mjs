// The official E2B SDK's commands and pty (envd's process.Process service,
// emulated by the daemon: docs/e2b.md) against a real warmbox daemon.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, Sandbox, TimeoutError } from 'e2b'

import { Daemon, eventually, skipReason } from './daemon.mjs'

const skip = skipReason()

describe('E2B commands and pty', { skip: skip || false }, () => {
  let d, s

  before(async () => {
    d = await new Daemon().start()
    s = await Sandbox.create({ ...d.opts, timeoutMs: 300_000 })
  })
  after(async () => {
    if (!d) return
    if (s) await s.kill().catch(() => {})
    const problems = await d.stop()
    assert.deepEqual(problems, [])
  })

  it('runs in the foreground: stdout, stderr, env, cwd, user', async () => {
    const r = await s.commands.run('echo out; echo err >&2; echo "$X"; pwd', { envs: { X: 'per-call' }, cwd: '/tmp' })
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'out\nper-call\n/tmp\n')
    assert.equal(r.stderr, 'err\n')
    const root = await s.commands.run('id -u', { user: 'root' })
    assert.equal(root.stdout, '0\n')
    const user = await s.commands.run('id -un; echo $HOME')
    assert.equal(user.stdout, 'user\n/home/user\n')
  })

  it('streams output through callbacks before the command ends', async () => {
    const chunks = []
    const r = await s.commands.run('for i in 1 2 3; do echo $i; done', { onStdout: c => chunks.push(c) })
    assert.equal(r.stdout, '1\n2\n3\n')
    assert.equal(chunks.join(''), '1\n2\n3\n')
  })

  it('a non-zero exit raises CommandExitError with the code', async () => {
    await assert.rejects(s.commands.run('exit 3'), err => {
      assert.ok(err instanceof CommandExitError, String(err))
      assert.equal(err.exitCode, 3)
      return true
    })
  })

  it('the deadline kills the command', async () => {
    const t0 = Date.now()
    await assert.rejects(s.commands.run('sleep 30', { timeoutMs: 1_000 }), TimeoutError)
    assert.ok(Date.now() - t0 < 20_000)
    // The process is gone, not only the client's wait.
    assert.ok(await eventually(async () =>
      !(await s.commands.list()).some(p => p.args.join(' ').includes('sleep 30')), 10_000))
  })

  it('background commands: list, connect from a second SDK instance, kill', async () => {
    const h = await s.commands.run('for i in $(seq 1 1000); do echo tick $i; sleep 0.1; done', { background: true })
    assert.ok(h.pid > 0)
    const listed = await s.commands.list()
    assert.ok(listed.some(p => p.pid === h.pid), JSON.stringify(listed))
    await h.disconnect()
    // Detached, not killed: a second client attaches and sees new output.
    const other = await Sandbox.connect(s.sandboxId, d.opts)
    let seen = ''
    const attached = await other.commands.connect(h.pid, { onStdout: c => { seen += c } })
    assert.ok(await eventually(() => /tick \d+/.test(seen), 10_000), `saw ${JSON.stringify(seen)}`)
    assert.equal(await other.commands.kill(h.pid), true)
    await assert.rejects(attached.wait(), CommandExitError)
    assert.equal(await other.commands.kill(h.pid), false, 'a second kill finds nothing')
  })

  it('stdin: send, then close', async () => {
    const h = await s.commands.run('cat', { background: true, stdin: true })
    await s.commands.sendStdin(h.pid, 'hello ')
    await s.commands.sendStdin(h.pid, 'stdin\n')
    await s.commands.closeStdin(h.pid)
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello stdin\n')
  })

  it('pty: size, input, resize, kill', async () => {
    let out = ''
    const dec = new TextDecoder()
    const p = await s.pty.create({ cols: 91, rows: 17, onData: d => { out += dec.decode(d) } })
    const enc = new TextEncoder()
    await s.pty.sendInput(p.pid, enc.encode('stty size\n'))
    assert.ok(await eventually(() => out.includes('17 91'), 10_000), `pty said ${JSON.stringify(out)}`)
    await s.pty.resize(p.pid, { cols: 120, rows: 40 })
    await s.pty.sendInput(p.pid, enc.encode('stty size\n'))
    assert.ok(await eventually(() => out.includes('40 120'), 10_000), `pty said ${JSON.stringify(out)}`)
    assert.equal(await s.pty.kill(p.pid), true)
    await assert.rejects(p.wait())
  })
})
