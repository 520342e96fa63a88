// The E2B SDK on the vm driver (a subset: create, commands, files, pty,
// pause and resume), against a daemon whose sandboxes are QEMU microVMs.
// ctest's e2b_sdk_vm_test (label vm).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, Sandbox } from 'e2b'

import { Daemon, eventually, skipReason } from '../daemon.mjs'

function vmSkipReason () {
  const base = skipReason()
  if (base) return base
  if (!fs.existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86_64 not installed (scripts/setup)'
  const kernelRoot = process.env.WARMBOX_KERNEL_ROOT || '/var/lib/warmbox/kernel'
  if (!fs.existsSync(`${kernelRoot}/current/vmlinux`)) return `no guest kernel in ${kernelRoot} (run scripts/setup)`
  if (!fs.existsSync('/usr/bin/mkfs.erofs')) return 'mkfs.erofs not installed (scripts/setup)'
  return ''
}

const skip = vmSkipReason()

describe('E2B SDK on the vm driver', { skip: skip || false }, () => {
  let d, s

  before(async () => {
    d = await new Daemon({ args: ['--driver', 'vm', '--size', '1', '--max', '2'] }).start()
    // A first boot of base's layers can take a while under emulation.
    s = await Sandbox.create({ ...d.opts, timeoutMs: 300_000, requestTimeoutMs: 300_000 })
  })
  after(async () => {
    if (!d) return
    if (s) await s.kill().catch(() => {})
    const problems = await d.stop()
    assert.deepEqual(problems, [])
  })

  it('runs commands in the guest', async () => {
    // The guest's PID 1 is the agent as /init (an ns sandbox's is warmbox-agent).
    const r = await s.commands.run('echo "$(whoami) $(cat /proc/1/comm)"')
    assert.equal(r.stdout, 'user init\n')
    await assert.rejects(s.commands.run('exit 4'), err => err instanceof CommandExitError && err.exitCode === 4)
  })

  it('round-trips a file', async () => {
    const data = Buffer.alloc(300_000, 7)
    await s.files.write('/tmp/vm.bin', data.buffer.slice(data.byteOffset, data.byteOffset + data.length))
    assert.ok(Buffer.from(await s.files.read('/tmp/vm.bin', { format: 'bytes' })).equals(data))
    assert.deepEqual((await s.files.list('/tmp')).map(e => e.name).filter(n => n === 'vm.bin'), ['vm.bin'])
  })

  it('drives a pty', async () => {
    let out = ''
    const dec = new TextDecoder()
    const p = await s.pty.create({ cols: 70, rows: 21, onData: b => { out += dec.decode(b) } })
    await s.pty.sendInput(p.pid, new TextEncoder().encode('stty size\n'))
    assert.ok(await eventually(() => out.includes('21 70'), 20_000), JSON.stringify(out))
    assert.equal(await s.pty.kill(p.pid), true)
  })

  it('pauses and resumes', async () => {
    const bg = await s.commands.run('sleep 600', { background: true })
    assert.equal(await s.pause(), true)
    const again = await Sandbox.connect(s.sandboxId, d.opts)
    assert.ok((await again.commands.list()).some(p => p.pid === bg.pid))
  })
})
